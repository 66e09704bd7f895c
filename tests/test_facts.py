"""The places that must agree on one fact do: each collector's meters and states and the wire
contract, the backends and the providers, the UUID shape everywhere it is checked."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any, get_args

import pytest
from azfed import wire
from azfed.agent.collect import COLLECTORS
from azfed.agent.collect.ec2 import DESCRIBED, METRICS, instance_from
from azfed.agent.collect.guest import GuestCollector
from azfed.agent.collect.openstack import instance_from as os_instance_from
from azfed.agent.collect.sample import Instance, Observation
from azfed.clouds import BACKENDS, NOVA_STATUS_STATES, Cloud, RemoteState
from azfed.config import parse_config
from azfed.errors import ConfigError, InputError

NOW = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def report_of(obs: Observation) -> dict[str, Any]:
    return {
        "version": wire.CONTRACT_VERSION,
        "agent_id": "facts",
        "seq": 0,
        "sent_at": "2025-01-02T03:04:05Z",
        "instances": [i.as_wire() for i in obs.instances],
        "samples": [s.as_wire() for s in obs.samples],
    }


# --- meters --------------------------------------------------------------------------------------


def test_the_meter_list_and_the_meter_units_name_the_same_meters() -> None:
    assert set(get_args(wire.Meter)) == set(wire.METERS)


def test_the_ec2_collector_reads_every_contract_meter_and_no_other() -> None:
    """Each meter the contract has is read from some CloudWatch metric or from the describe,
    never both, and nothing else is."""
    assert set(METRICS) | DESCRIBED == set(wire.METERS)
    assert not set(METRICS) & DESCRIBED


def test_every_wire_state_has_a_power_state() -> None:
    assert set(wire.POWER_STATES) == set(wire.STATES)


def test_the_ec2_collector_reads_device_meters_per_device() -> None:
    """Disk meters are read per EBS volume, and only they; network meters per instance (the
    collector puts them on the primary ENI)."""
    per_volume = {m for m, s in METRICS.items() if s.per == "volume"}
    assert per_volume == {m for m, f in wire.METERS.items() if f.resource_type == "instance_disk"}


def write_proc(proc: Path, busy: int, idle: int) -> None:
    (proc / "net").mkdir(parents=True, exist_ok=True)
    (proc / "stat").write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 {busy} 0 0 {idle}\n")
    (proc / "meminfo").write_text("MemTotal: 4096000 kB\nMemAvailable: 1024000 kB\n")
    (proc / "net" / "dev").write_text(
        "Inter-|   Receive\n face |bytes\n  eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n"
    )
    (proc / "diskstats").write_text("   8       0 vda 10 0 80 0 5 0 40 0 0 0 0\n")


async def test_the_guest_collector_gives_every_contract_meter_in_a_valid_report(
    tmp_path: Path,
) -> None:
    """The guest collector has every meter, and the receiver's own validation accepts what
    it produced (units, types, resource types and devices included)."""
    me = str(uuid.uuid4())
    col = GuestCollector(me, wire.ALL_METERS, proc=tmp_path)
    write_proc(tmp_path, busy=150, idle=1850)
    obs = await col.collect()
    assert {s.meter for s in obs.samples} == set(wire.METERS)
    wire.validate_report(report_of(obs))


# --- states and providers ------------------------------------------------------------------------


def test_every_collector_is_a_wire_provider_and_every_backend_a_cloud() -> None:
    assert set(COLLECTORS) == set(wire.PROVIDERS)
    assert set(BACKENDS) == set(get_args(Cloud)) <= set(wire.PROVIDERS)


def test_the_backends_states_are_wire_states() -> None:
    assert {s.value for s in RemoteState} <= set(wire.STATES)


def test_every_nova_status_maps_to_a_state_the_backend_knows_too() -> None:
    """The OpenStack backend reads the same map as the collector, so each value must be a
    RemoteState (RemoteState(...) raises for any other)."""
    assert {RemoteState(s) for s in NOVA_STATUS_STATES.values()}


@pytest.mark.parametrize(
    ("status", "state"),
    [("ACTIVE", "running"), ("RESIZE", "pending"), ("SHUTOFF", "stopped"), ("NEW", "unknown")],
)
def test_an_openstack_server_becomes_a_valid_wire_instance(status: str, state: str) -> None:
    """A resize in progress is pending (the guest is powered off and rebuilt), and a status
    this version has never heard of is unknown, not a report the receiver refuses."""
    nova_uuid = str(uuid.uuid4())
    server = SimpleNamespace(
        id="srv-1",
        status=status,
        metadata={"azfed:instance-uuid": nova_uuid},
        addresses={"net": [{"addr": "10.0.0.5", "OS-EXT-IPS:type": "fixed"}]},
        flavor={"original_name": "m1.small"},
        availability_zone="nova",
        launched_at="2025-01-02T03:00:00.000000",
    )
    inst = os_instance_from(server, NOW)
    assert isinstance(inst, Instance)
    assert inst.state == state
    wire.validate_report(report_of(Observation([inst])))


def test_an_ec2_state_the_contract_lacks_is_reported_unknown() -> None:
    raw = {"InstanceId": "i-1", "State": {"Name": "hibernating"}}
    inst = instance_from(raw, str(uuid.uuid4()), NOW)
    assert inst.state == "unknown"
    wire.validate_report(report_of(Observation([inst])))


# --- the UUID ------------------------------------------------------------------------------------

GOOD = "0b9e3f1c-4d2a-4c55-9d1e-2b7f6a0c8e11"


@pytest.mark.parametrize("bad", [GOOD + "\n", " " + GOOD, GOOD[:-1], GOOD.replace("-", "")])
def test_a_uuid_with_anything_around_it_is_refused_everywhere(bad: str) -> None:
    """A trailing newline passes Python's `$`: the contract, the agent's config and the
    collectors all refuse it anyway."""
    assert wire.is_uuid(GOOD)
    assert not wire.is_uuid(bad)
    inst = Instance(bad, "guest", "host", "running", NOW)
    with pytest.raises(InputError):
        wire.validate_report(report_of(Observation([inst])))
    with pytest.raises(ConfigError):
        parse_config({"agent": {"id": "a", "provider": "guest", "instance_uuid": bad}})
    server = SimpleNamespace(metadata={"azfed:instance-uuid": bad})
    assert os_instance_from(server, NOW) is None


# --- settings that are facts, not settings -------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "key", "value"),
    [("aws", "tag_key", "other:tag"), ("openstack", "concurrency", 4)],
)
def test_settings_that_meant_nothing_are_refused(table: str, key: str, value: object) -> None:
    """`[aws] tag_key` (the tag is fixed: driver, collectors and IAM policy name it) and
    `[openstack] concurrency` (the collector makes one call a cycle) are gone."""
    base = {"aws": {"region": "us-east-1"}, "openstack": {"cloud": "public"}}
    base[table] = {**base[table], key: value}
    with pytest.raises(ConfigError) as caught:
        parse_config(base)
    assert f"[{table}] {key}" in [p.key for p in caught.value.problems]

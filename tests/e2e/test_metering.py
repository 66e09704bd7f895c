"""Burst VMs metered like local ones, on the bed's real parts (issue 12): the bed's Gnocchi as
Ceilometer's `ceilometer-upgrade` provisioned it; a local VM (compute-local) whose samples go
through Ceilometer's own pollsters and Gnocchi publisher (tests/receiver/ceilometer_publish.py,
in Ceilometer's virtualenv); a burst VM (aws-az) whose CloudWatch datapoints the real azfed agent
reads from moto and the real receiver writes; and the bed's real Aodh (api, evaluator, notifier).

Given, not real: the local hypervisor's counters (no libvirt here) and the CloudWatch datapoints
(seeded into moto), each chosen so that the expected aggregate can be computed by hand.

The tests share one federation and one pair of VMs, and build on each other in file order.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azfed import wire

from testbed import ceilometer
from testbed.aws import REGION
from testbed.openstack import PORTS, OpenStackBed
from tests.e2e.federation import Federation, eventually

pytestmark = pytest.mark.e2e

PUBLISH = Path(__file__).parents[1] / "receiver" / "ceilometer_publish.py"
PERIOD_S = 300  # the agent's CloudWatch period, and the granularity of ceilometer-low-rate
NS = 1e9
# CPU, as a share of all the VM's vCPUs, in the three periods P0, P1, P2
BURST_CPU = (0.10, 0.90, 0.05)  # CloudWatch's CPUUtilization / 100
LOCAL_CPU = 0.10  # the local VM's guest, every period
THRESHOLD_NS = 1.5e11  # per 5 minutes, over the server group's mean


@dataclass
class Pair:
    """A local and a burst VM in one server group (Nova metadata `metering.server_group`)."""

    group: str
    local: Any
    burst: Any
    burst_vcpus: int
    periods: tuple[int, int, int]  # P0, P1, P2: epoch seconds, each a period's start


def _gnocchi(fed: Federation) -> Any:
    return fed.demo.gnocchi()


def _periods() -> tuple[int, int, int]:
    """The three last complete periods, P2 the newest. The agent reads the newest complete
    period and two before it: with less than 30 s left in the current one, the next would drop
    P0 from its window before the agent's first cycle reads it, so wait for it to start."""
    if PERIOD_S - time.time() % PERIOD_S < 30:
        time.sleep(PERIOD_S - time.time() % PERIOD_S + 1)
    now = int(time.time()) // PERIOD_S * PERIOD_S
    return now - 3 * PERIOD_S, now - 2 * PERIOD_S, now - PERIOD_S


@pytest.fixture(scope="module")
def pair(federation: Federation) -> Pair:
    group = f"e2e-group-{uuid.uuid4().hex[:6]}"
    meta = {"metering.server_group": group}
    local = federation.boot("metered-local", availability_zone="local-az", metadata=meta)
    burst = federation.boot("metered-burst", availability_zone="aws-az", metadata=meta)
    [instance] = federation.ec2_instances_for(burst.id)
    # the vCPUs EC2 documents for the type (moto's instances carry no CpuOptions)
    [info] = federation.ec2.describe_instance_types(InstanceTypes=[instance["InstanceType"]])[
        "InstanceTypes"
    ]
    return Pair(group, local, burst, info["VCpuInfo"]["DefaultVCpus"], _periods())


# --- the two VMs' CPU time, each the way its cloud gives it ----------------------------------


def seed_cloudwatch(fed: Federation, pair: Pair, period: int, utilization: float) -> None:
    """CPUUtilization datapoints for the burst VM, one a minute over one period (basic
    monitoring's statistic over the period is their average: `utilization`)."""
    [instance] = fed.ec2_instances_for(pair.burst.id)
    data = [
        {
            "name": "CPUUtilization",
            "dims": {"InstanceId": instance["InstanceId"]},
            "ts": period + 60 * m,
            "value": 100 * utilization,
            "unit": "Percent",
        }
        for m in range(PERIOD_S // 60)
    ]
    body = json.dumps({"namespace": "AWS/EC2", "region": REGION, "data": data}).encode()
    req = urllib.request.Request(
        fed.demo.moto_endpoint + "/_seed/cloudwatch",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(req, timeout=60).close()


def local_cpu_time_ns(k: int) -> float:
    """The local VM's cumulative CPU time at the start of period k (1 vCPU; from 1000 s)."""
    return 1000 * NS + k * LOCAL_CPU * 1 * PERIOD_S * NS


def ceilometer_instance(fed: Federation, server: Any) -> dict[str, Any]:
    """The local VM as Ceilometer's compute discovery builds it (NovaLikeServer), from what
    Nova says of the real server."""
    s = fed.conn.compute.get_server(server.id)
    flavor = fed.conn.compute.find_flavor(s.flavor.original_name)
    return {
        "id": s.id,
        "name": s.name,
        "flavor": {
            "id": flavor.id, "name": flavor.name, "vcpus": flavor.vcpus, "ram": flavor.ram,
            "disk": flavor.disk, "ephemeral": flavor.ephemeral, "swap": flavor.swap or 0,
        },
        "image": {"id": s.image.id},
        "os_type": "hvm",
        "architecture": "x86_64",
        "OS-EXT-SRV-ATTR:instance_name": s.instance_name,
        "OS-EXT-SRV-ATTR:host": s.compute_host,
        "OS-EXT-STS:vm_state": s.vm_state,
        "tenant_id": s.project_id,
        "user_id": s.user_id,
        "hostId": s.host_id,
        "status": s.status.lower(),
        "metadata": dict(s.metadata),
    }  # fmt: skip


def publish_local(bed: OpenStackBed, fed: Federation, pair: Pair, k: int) -> None:
    """One polling cycle of Ceilometer's compute agent at the start of period k, published to
    the bed's Gnocchi by Ceilometer's publisher (the config the bed provisioned it with)."""
    conf = bed.etc / "ceilometer" / "ceilometer.conf"
    stats = {
        "instance": {
            "power_state": 1, "cpu_number": 1, "cpu_time": int(local_cpu_time_ns(k)),
            "memory_actual": 1024.0, "memory_usage": 300.0,
        },
        "vnics": [],
        "disks": [],
    }  # fmt: skip
    body = {
        "meters": list(wire.METERS),
        "instance": ceilometer_instance(fed, pair.local),
        "stats": stats,
        "notifications": [],
        "polled_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(pair.periods[k])),
    }
    out = subprocess.run(
        [str(ceilometer.venv() / "bin" / "python"), str(PUBLISH), "--config-file", str(conf)],
        input=json.dumps(body), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, f"Ceilometer's publisher failed:\n{out.stdout[-3000:]}"


def burst_cpu_ns(pair: Pair, k: int) -> float:
    """What the burst VM's `cpu` grows by in period k: CPUUtilization x vCPUs x period."""
    return BURST_CPU[k] * pair.burst_vcpus * PERIOD_S * NS


def cpu_points(fed: Federation, server_id: str, n: int) -> list[Any] | None:
    rows = fed.cpu_measures(server_id)
    return rows if len(rows) >= n else None


# --- Aodh ------------------------------------------------------------------------------------


def aodh(fed: Federation, method: str, path: str, body: Any = None) -> Any:
    req = urllib.request.Request(
        f"http://127.0.0.1:{PORTS['aodh-api']}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"X-Auth-Token": fed.conn.auth_token, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"null")


def most_recent(reason: str) -> float:
    """The value Aodh's evaluator compared last, from its state reason."""
    return float(reason.rsplit("most recent: ", 1)[1].rstrip("."))


def wait_for_state(fed: Federation, alarm_id: str, state: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        alarm: dict[str, Any] = aodh(fed, "GET", f"/v2/alarms/{alarm_id}")
        return alarm if alarm["state"] == state else None

    return eventually(reached, f"alarm {alarm_id} in state {state!r}", timeout=150)


# --- the tests -------------------------------------------------------------------------------


def test_the_beds_gnocchi_is_provisioned_by_ceilometer_upgrade(federation: Federation) -> None:
    """The resource types only Ceilometer's `ceilometer-upgrade` creates are there (azfed
    creates three of them at most): the receiver writes into a Gnocchi as a cloud has it."""
    types = {t["name"] for t in _gnocchi(federation).resource_type.list()}
    assert {"instance", "instance_disk", "instance_network_interface", "volume", "image",
            "stack", "network"} <= types  # fmt: skip


def test_an_aodh_alarm_on_a_server_group_sees_the_burst_vm_beside_the_local_one(
    federation: Federation, pair: Pair, openstack_bed: OpenStackBed
) -> None:
    """A `gnocchi_aggregation_by_resources_threshold` alarm on `cpu`, `rate:mean` over the
    server group: it goes to `alarm` when the burst VM's CloudWatch CPU rises, with the group's
    mean of both VMs' CPU time, and back to `ok` when it falls; the notifier acts on both."""
    fed = federation
    for k in (0, 1):
        publish_local(openstack_bed, fed, pair, k)
        seed_cloudwatch(fed, pair, pair.periods[k], BURST_CPU[k])
    # both in Gnocchi before the alarm exists: its first evaluation sees the two VMs
    eventually(lambda: cpu_points(fed, pair.local.id, 2), "the local VM's P0 and P1 cpu")
    eventually(lambda: cpu_points(fed, pair.burst.id, 2), "the burst VM's P0 and P1 cpu")
    rule = {
        "metric": "cpu",
        "aggregation_method": "rate:mean",
        "granularity": PERIOD_S,
        "evaluation_periods": 1,
        "threshold": THRESHOLD_NS,
        "comparison_operator": "gt",
        "resource_type": "instance",
        "query": json.dumps({"=": {"server_group": pair.group}}),
    }
    alarm = aodh(fed, "POST", "/v2/alarms", {
        "name": f"{pair.group}-cpu-high",
        "type": "gnocchi_aggregation_by_resources_threshold",
        "gnocchi_aggregation_by_resources_threshold_rule": rule,
        "alarm_actions": ["log://"], "ok_actions": ["log://"],
    })  # fmt: skip
    try:
        # the rise: the group's CPU time over P1 is the mean of both VMs' (Gnocchi's
        # `aggregate rate:mean`: the mean across the group's metrics, then its growth)
        high = (burst_cpu_ns(pair, 1) + LOCAL_CPU * 1 * PERIOD_S * NS) / 2
        assert high > THRESHOLD_NS  # the burst VM alone would give twice as much
        got = wait_for_state(fed, alarm["alarm_id"], "alarm")
        assert most_recent(got["state_reason"]) == pytest.approx(high)

        # the fall: Ceilometer polls the local VM again, then P2 comes from CloudWatch (in
        # this order: the local VM's P2 alone keeps the group's mean high, the burst VM's alone
        # would drop it below the threshold with another value than the two together)
        publish_local(openstack_bed, fed, pair, 2)
        eventually(lambda: cpu_points(fed, pair.local.id, 3), "the local VM's P2 cpu")
        seed_cloudwatch(fed, pair, pair.periods[2], BURST_CPU[2])
        low = (burst_cpu_ns(pair, 2) + LOCAL_CPU * 1 * PERIOD_S * NS) / 2
        assert low < THRESHOLD_NS
        got = wait_for_state(fed, alarm["alarm_id"], "ok")
        assert most_recent(got["state_reason"]) == pytest.approx(low)

        notified = (openstack_bed.logs / "aodh-notifier.log").read_text(errors="replace")
        for transition in ("to alarm", "to ok"):
            assert any(alarm["alarm_id"] in line and transition in line
                       for line in notified.splitlines()), transition  # fmt: skip
    finally:
        aodh(fed, "DELETE", f"/v2/alarms/{alarm['alarm_id']}")


@pytest.mark.parametrize("attribute", ["flavor_name", "flavor_id", "server_group"])
def test_a_search_by_nova_attributes_finds_the_burst_vm_beside_the_local_one(
    federation: Federation, pair: Pair, attribute: str
) -> None:
    """Both VMs' `instance` resources carry the same Nova facts under Ceilometer's attribute
    names, so one search finds both (the local one written by Ceilometer, after the alarm test
    or here)."""
    gnocchi = _gnocchi(federation)
    local = eventually(
        lambda: next(iter(gnocchi.resource.search(
            resource_type="instance", query={"=": {"id": pair.local.id}})), None),
        "the local VM's resource, from Ceilometer's publisher",
    )  # fmt: skip
    found = gnocchi.resource.search(
        resource_type="instance", query={"=": {attribute: local[attribute]}}
    )
    assert {pair.local.id, pair.burst.id} <= {r["id"] for r in found}


def test_a_search_by_availability_zone_finds_the_burst_vm(
    federation: Federation, pair: Pair
) -> None:
    """azfed writes the public AZ. (Ceilometer 27 leaves a local VM's empty: docs/metering.md.)"""
    found = _gnocchi(federation).resource.search(
        resource_type="instance", query={"=": {"availability_zone": "aws-az"}}
    )
    assert pair.burst.id in {r["id"] for r in found}


def test_after_a_resize_the_flavor_attributes_follow(federation: Federation, pair: Pair) -> None:
    """Nova resizes the burst VM (the driver changes its EC2 type): with the next report the
    resource's flavor_id and flavor_name are the new flavor's."""
    conn = federation.conn
    medium = conn.compute.find_flavor("m1.medium")
    conn.compute.resize_server(pair.burst, medium.id)
    server = conn.compute.wait_for_server(
        pair.burst, status="VERIFY_RESIZE", failures=["ERROR"], wait=180, interval=0.5
    )
    conn.compute.confirm_server_resize(server)
    conn.compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], wait=180)
    gnocchi = _gnocchi(federation)

    def resized() -> dict[str, Any] | None:
        r: dict[str, Any] = gnocchi.resource.get("instance", pair.burst.id)
        return r if r["flavor_name"] == "m1.medium" else None

    resource = eventually(resized, "flavor_name m1.medium on the burst VM's resource")
    assert resource["flavor_id"] == medium.id


def test_after_delete_ended_at_is_set(federation: Federation, pair: Pair) -> None:
    """Nova deletes the burst VM (the driver terminates it): the receiver sets ended_at."""
    conn = federation.conn
    conn.compute.delete_server(pair.burst)
    conn.compute.wait_for_delete(pair.burst, wait=180)
    gnocchi = _gnocchi(federation)

    def ended() -> str | None:
        ended_at: str | None = gnocchi.resource.get("instance", pair.burst.id)["ended_at"]
        return ended_at

    eventually(ended, "ended_at on the deleted burst VM's resource")
    local = gnocchi.resource.get("instance", pair.local.id)
    assert local["ended_at"] is None

"""The Gnocchi sink against REAL Gnocchi: what it leaves there (archive policies, resource types,
resources, their attributes and history, metrics), read back through Gnocchi's own API.

Tests that need a Gnocchi in a state the bed's must not be put in (fresh, with an older
`instance` type, with an operator's policy and no Ceilometer ones) each get a throwaway Gnocchi
of their own (testbed/gnocchi.py); the others write to the bed's Gnocchi under fresh instance
UUIDs, so tests sharing the bed never see each other's resources. Nova's facts are made here:
NovaClient is tested against the bed's real Nova elsewhere. Refusals are in
test_gnocchi_refusals_bed.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from azfed import wire
from azfed.receiver.nova import ServerFacts
from azfed.receiver.sinks import Batch
from azfed.receiver.sinks.gnocchi import RESOURCE_TYPES, GnocchiSink, basic_auth

from testbed.gnocchi import ThrowawayGnocchi
from testbed.openstack import HOST, PORTS, OpenStackBed
from tests.receiver.conftest import NOW, example

# the attributes an azfed before contract 2 gave the instance type
OLD_INSTANCE_TYPE = {
    k: v
    for k, v in RESOURCE_TYPES["instance"].items()
    if k in ("display_name", "flavor_id", "host", "image_ref", "server_group", "flavor_name")
}
ENI = "eni-0a1b2c3d4e5f60718"
DISK = "xvda"
DEVICES = {"instance_network_interface": ENI, "instance_disk": DISK}

FACTS = ServerFacts(
    uuid="",  # each test's own
    name="web-1",
    flavor_id="3f1e9c0a-flavor-id",
    flavor_name="m1.small",
    host="compute-aws",
    image_ref="9a8b7c6d-image",
    az="aws-az",
    project_id="p1",
    user_id="u1",
    status="ACTIVE",
    created_at="2025-01-15T09:57:00Z",
    metadata={"metering.server_group": "web"},
    launched_at="2025-01-15T09:58:12.000000",
)


@pytest.fixture
def bed_gnocchi(openstack_bed: OpenStackBed) -> str:
    """The bed's Gnocchi, shared: write only under fresh UUIDs."""
    return f"http://{HOST}:{PORTS['gnocchi-api']}"


@pytest.fixture
def fresh_gnocchi(openstack_bed: OpenStackBed, tmp_path: Path) -> Iterator[str]:
    """A Gnocchi of this test's own, as `gnocchi-upgrade` leaves it: no Ceilometer policy or
    type yet. Gone (process and database) after the test."""
    with ThrowawayGnocchi(openstack_bed, tmp_path / "gnocchi") as url:
        yield url


# --- reading Gnocchi back ----------------------------------------------------------------------


async def call(url: str, method: str, path: str, body: Any = None, **headers: str) -> Any:
    """`method` `path` on Gnocchi as admin; its JSON answer, which must be a success."""
    auth = await basic_auth("admin")()
    data = None if body is None else json.dumps(body)
    hdrs = {**auth, "Content-Type": "application/json", "Accept": "application/json", **headers}
    async with (
        aiohttp.ClientSession(headers=hdrs) as s,
        s.request(method, url + path, data=data) as resp,
    ):
        text = await resp.text()
        assert resp.status < 300, f"{method} {path}: HTTP {resp.status} {text}"
        return json.loads(text) if text else None


async def read(url: str, path: str) -> Any:
    return await call(url, "GET", path)


async def history(url: str, rtype: str, rid: str) -> list[dict[str, Any]]:
    """The resource's revisions, oldest first."""
    found: list[dict[str, Any]] = await read(
        url, f"/v1/resource/{rtype}/{rid}/history?sort=revision_start:asc"
    )
    return found


async def metrics(url: str, rtype: str, rid: str) -> dict[str, dict[str, Any]]:
    """The resource's metrics by name, each as GET /v1/metric/<id> defines it."""
    resource = await read(url, f"/v1/resource/{rtype}/{rid}")
    return {name: await read(url, f"/v1/metric/{mid}") for name, mid in resource["metrics"].items()}


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- the sink, its reports and Nova ------------------------------------------------------------


class Nova:
    """The facts NovaClient.server would give of `uuid`, changeable by the test; None: no such
    server. Records which instances it was asked about afresh."""

    def __init__(self, uuid: str, facts: ServerFacts | None) -> None:
        self.uuid = uuid
        self.facts = facts
        self.fresh: list[str] = []

    async def __call__(self, uuid: str, *, fresh: bool = False) -> ServerFacts | None:
        if fresh:
            self.fresh.append(uuid)
        return self.facts if uuid == self.uuid else None


def facts(uuid: str, **changes: Any) -> ServerFacts:
    return dataclasses.replace(FACTS, uuid=uuid, **changes)


def report(instances: int = 1) -> tuple[dict[str, Any], str]:
    """report-full under fresh instance UUIDs, with its first `instances` instances (every
    sample is the first's); and the first's UUID."""
    text = json.dumps(example("report-full"))
    fresh = []
    for inst in example("report-full")["instances"]:
        fresh.append(str(uuid.uuid4()))
        text = text.replace(inst["instance_uuid"], fresh[-1])
    out = json.loads(text)
    out["instances"] = out["instances"][:instances]
    return out, fresh[0]


async def start_sink(url: str, nova: Nova | None = None, **kw: Any) -> GnocchiSink:
    sink = GnocchiSink(url, basic_auth("admin"), facts=nova, **kw)
    await sink.start()
    return sink


async def write(sink: GnocchiSink, key: str, body: dict[str, Any], at: float) -> None:
    """One batch, which Gnocchi must take whole: nothing dropped."""
    batch = Batch(key, body, at)
    await sink.write(batch)
    assert batch.dropped == []


# --- a fresh Gnocchi -----------------------------------------------------------------------------


async def test_a_fresh_gnocchi_gets_ceilometers_archive_policies_and_resource_types(
    fresh_gnocchi: str,
) -> None:
    url = fresh_gnocchi
    sink = await start_sink(url)
    await sink.close()
    low = await read(url, f"/v1/archive_policy/{wire.LOW}")
    rate = await read(url, f"/v1/archive_policy/{wire.LOW_RATE}")
    assert (sorted(low["aggregation_methods"]), sorted(rate["aggregation_methods"])) == (
        ["mean"],
        ["mean", "rate:mean"],
    )
    # 5 minutes over 30 days
    assert low["definition"] == rate["definition"] == [
        {"granularity": "0:05:00", "timespan": "30 days, 0:00:00", "points": 8640}
    ]  # fmt: skip
    for rtype, attributes in RESOURCE_TYPES.items():
        have = (await read(url, f"/v1/resource_type/{rtype}"))["attributes"]
        assert {k: (a["type"], a["required"]) for k, a in have.items()} == {
            k: (a["type"], a["required"]) for k, a in attributes.items()
        }, rtype


async def test_an_older_instance_type_gets_the_attributes_it_lacks_as_json_patch(
    fresh_gnocchi: str,
) -> None:
    """As ceilometer-upgrade does: only what is missing is added, nothing is recreated (the
    type's resources stay). Gnocchi takes a resource type's PATCH as JSON Patch only, so the
    type's new attributes show the content type was right."""
    url = fresh_gnocchi
    await call(
        url, "POST", "/v1/resource_type", {"name": "instance", "attributes": OLD_INSTANCE_TYPE}
    )
    old = str(uuid.uuid4())
    await call(url, "POST", "/v1/resource/instance", {
        "id": old, "display_name": "old", "flavor_id": "1", "flavor_name": "m1.tiny",
    })  # fmt: skip
    sink = await start_sink(url)
    await sink.close()
    have = (await read(url, "/v1/resource_type/instance"))["attributes"]
    assert set(have) == set(RESOURCE_TYPES["instance"])
    added = set(have) - set(OLD_INSTANCE_TYPE)
    assert added == {"availability_zone", "created_at", "deleted_at", "launched_at"}
    resource = await read(url, f"/v1/resource/instance/{old}")
    assert resource["display_name"] == "old"
    assert {k: resource[k] for k in added} == dict.fromkeys(added)


async def test_a_required_attribute_added_to_a_type_with_resources_is_filled_in_them(
    fresh_gnocchi: str,
) -> None:
    """Ceilometer's first instance type, without flavor_name: Gnocchi adds a required attribute
    to a type that has resources only with a value for them (Ceilometer fills '')."""
    url = fresh_gnocchi
    first = {k: v for k, v in OLD_INSTANCE_TYPE.items() if k != "flavor_name"}
    await call(url, "POST", "/v1/resource_type", {"name": "instance", "attributes": first})
    old = str(uuid.uuid4())
    await call(url, "POST", "/v1/resource/instance",
               {"id": old, "display_name": "old", "flavor_id": "1"})  # fmt: skip
    sink = await start_sink(url)
    await sink.close()
    have = (await read(url, "/v1/resource_type/instance"))["attributes"]
    assert have["flavor_name"]["required"] is True
    assert (await read(url, f"/v1/resource/instance/{old}"))["flavor_name"] == ""


async def test_an_operators_archive_policy_takes_every_metric(fresh_gnocchi: str) -> None:
    """[gnocchi] archive_policy set: Ceilometer's `archive_policy` option, one for all; the
    Ceilometer policies are not created."""
    url = fresh_gnocchi
    await call(url, "POST", "/v1/archive_policy", {
        "name": "mine", "aggregation_methods": ["mean"],
        "definition": [{"granularity": "1 minute", "timespan": "1 day"}],
    })  # fmt: skip
    body, first = report(instances=2)
    sink = await start_sink(url, Nova(first, facts(first)), archive_policy="mine")
    await write(sink, "k", body, NOW)
    await sink.close()
    found = await read(url, "/v1/metric")
    assert {m["name"] for m in found} == set(wire.METERS)
    assert {m["archive_policy"]["name"] for m in found} == {"mine"}
    policies = {p["name"] for p in await read(url, "/v1/archive_policy")}
    assert not policies & {wire.LOW, wire.LOW_RATE}


# --- the bed's Gnocchi, under fresh UUIDs ------------------------------------------------------


async def test_each_sample_goes_to_its_resource_under_its_meters_policy_and_unit(
    bed_gnocchi: str,
) -> None:
    """The instance, its vNIC and its disk are created with Ceilometer's attributes (the
    flavor's id, not its name; server_group from metering.server_group), and each metric
    carries gnocchi_resources.yaml's archive policy and Ceilometer's unit."""
    url = bed_gnocchi
    body, u = report()
    sink = await start_sink(url, Nova(u, facts(u)))
    await write(sink, "k", body, NOW)
    await sink.close()
    instance = await read(url, f"/v1/resource/instance/{u}")
    assert {k: instance[k] for k in ("flavor_id", "flavor_name", "server_group", "host")} == {
        "flavor_id": "3f1e9c0a-flavor-id", "flavor_name": "m1.small", "server_group": "web",
        "host": "compute-aws",
    }  # fmt: skip
    assert instance["availability_zone"] == "aws-az"
    assert when(instance["launched_at"]) == when("2025-01-15T09:58:12Z")
    eni = await read(url, f"/v1/resource/instance_network_interface/{u}-{ENI}")
    assert {k: eni[k] for k in ("original_resource_id", "name", "instance_id", "project_id",
                                "user_id", "type")} == {
        "original_resource_id": f"{u}-{ENI}", "name": ENI, "instance_id": u, "project_id": "p1",
        "user_id": "u1", "type": "instance_network_interface",
    }  # fmt: skip
    disk = await read(url, f"/v1/resource/instance_disk/{u}-{DISK}")
    assert (disk["type"], disk["name"], disk["instance_id"]) == ("instance_disk", DISK, u)
    got = {}
    for rtype, rid in [("instance", u), *((t, f"{u}-{d}") for t, d in DEVICES.items())]:
        for name, m in (await metrics(url, rtype, rid)).items():
            got[name] = (rtype, m["archive_policy"]["name"], m["unit"])
    assert got == {m: (f.resource_type, f.archive_policy, f.unit) for m, f in wire.METERS.items()}


async def test_the_measures_are_in_gnocchi(bed_gnocchi: str) -> None:
    """What the sink wrote reads back (refresh=true: Gnocchi processes the metric's pending
    measures on read)."""
    url = bed_gnocchi
    body, u = report()
    sink = await start_sink(url, Nova(u, facts(u)))
    await write(sink, "k", body, NOW)
    await sink.close()
    metric = (await read(url, f"/v1/resource/instance/{u}"))["metrics"]["memory.usage"]
    points = await read(url, f"/v1/metric/{metric}/measures?refresh=true")
    [sample] = [s for s in body["samples"] if s["meter"] == "memory.usage"]
    assert [(when(t), v) for t, _g, v in points] == [(when(sample["timestamp"]), sample["volume"])]


async def test_a_resize_and_a_rename_are_patched_and_only_what_changed(bed_gnocchi: str) -> None:
    """Nothing changed in Nova: nothing is written. A resize and a rename: one PATCH of what
    changed, seen in the resource's history. The sink compares with what it last wrote, so an
    attribute someone else changed in Gnocchi meanwhile (here `host`) stays as they set it:
    no PATCH carried it."""
    url = bed_gnocchi
    body, u = report(instances=2)
    nova = Nova(u, facts(u))
    sink = await start_sink(url, nova)
    await write(sink, "k1", body, NOW)
    await call(url, "PATCH", f"/v1/resource/instance/{u}", {"host": "moved-by-an-operator"})
    await write(sink, "k2", body, NOW + 60)
    assert len(await history(url, "instance", u)) == 2  # created, the operator's change
    nova.facts = facts(u, flavor_id="77-flavor-id", flavor_name="m1.large", name="web-1-renamed")
    await write(sink, "k3", body, NOW + 120)
    await sink.close()
    *_, before, after = revisions = await history(url, "instance", u)
    assert len(revisions) == 3
    changed = {k for k in after if after[k] != before[k] and not k.startswith("revision")}
    assert changed == {"display_name", "flavor_id", "flavor_name"}
    assert (after["flavor_name"], after["display_name"]) == ("m1.large", "web-1-renamed")
    assert after["host"] == "moved-by-an-operator"


async def test_a_new_public_type_asks_nova_afresh_so_a_resize_shows_at_once(
    bed_gnocchi: str,
) -> None:
    """NovaClient caches a server's facts for minutes. When the public cloud reports the
    instance under another type (the driver changed it for a resize, after Nova switched the
    flavor), the sink asks Nova afresh, once, instead of writing the cached flavor."""
    url = bed_gnocchi
    body, u = report()
    nova = Nova(u, facts(u))
    sink = await start_sink(url, nova)
    await write(sink, "k1", body, NOW)
    await write(sink, "k2", body, NOW + 60)
    assert nova.fresh == []  # the same type: the cache's answer is good
    body["instances"][0]["instance_type"] = "t3.xlarge"
    nova.facts = facts(u, flavor_id="77-flavor-id", flavor_name="m1.large")
    await write(sink, "k3", body, NOW + 120)
    await write(sink, "k4", body, NOW + 180)
    await sink.close()
    assert nova.fresh == [u]
    after = await read(url, f"/v1/resource/instance/{u}")
    assert (after["flavor_id"], after["flavor_name"]) == ("77-flavor-id", "m1.large")


async def test_ended_at_is_set_on_the_instance_and_its_devices_once_nova_deleted_it(
    bed_gnocchi: str,
) -> None:
    """The public cloud reports the VM ending and Nova (asked afresh, not from the cache) has
    no such server: the instance, its vNIC and its disk get ended_at, at the receiver's time,
    once (the next report's time is not written)."""
    url = bed_gnocchi
    body, u = report()
    nova = Nova(u, facts(u))
    sink = await start_sink(url, nova)
    # now, not the examples' clock: Gnocchi refuses an ended_at before the resource's
    # started_at, which is when the sink created it
    now = float(int(time.time()))
    await write(sink, "k1", body, now)
    nova.facts = None
    ending = json.loads(json.dumps(body))
    ending["instances"][0]["state"] = "shutting-down"
    ending["samples"] = []
    await write(sink, "k2", ending, now + 60)
    await write(sink, "k3", ending, now + 120)
    await sink.close()
    assert nova.fresh == [u]
    resources = [("instance", u), *((t, f"{u}-{d}") for t, d in DEVICES.items())]
    for rtype, rid in resources:
        revisions = await history(url, rtype, rid)
        assert [r["ended_at"] and when(r["ended_at"]) for r in revisions] == [
            None, datetime.fromtimestamp(now + 60, UTC),
        ], rid  # fmt: skip


async def test_a_running_instance_nova_does_not_know_is_not_ended(bed_gnocchi: str) -> None:
    """An orphan still running (Nova has no server, the cloud says running) keeps its
    resource open: its usage is real, and reconciliation reports the orphan."""
    url = bed_gnocchi
    body, u = report()
    sink = await start_sink(url, Nova(u, None))
    await write(sink, "k1", body, NOW)
    await write(sink, "k2", body, NOW + 60)
    await sink.close()
    [resource] = await history(url, "instance", u)  # never PATCHed
    assert resource["ended_at"] is None
    assert (resource["flavor_id"], resource["display_name"]) == ("", "i-0abc1234def567890")


async def test_a_husk_nova_still_has_is_not_ended_and_nova_is_asked_afresh_once_a_minute(
    bed_gnocchi: str,
) -> None:
    """Terminated in the public cloud but still in Nova (someone used the AWS console): the
    resource stays open; as the cloud lists it for an hour, Nova is not asked afresh about it
    in every report."""
    url = bed_gnocchi
    body, u = report()
    body["instances"][0]["state"] = "terminated"
    nova = Nova(u, facts(u))
    sink = await start_sink(url, nova)
    for k in range(3):
        await write(sink, f"k{k}", body, NOW + k)
    await sink.close()
    assert nova.fresh == [u]
    assert (await read(url, f"/v1/resource/instance/{u}"))["ended_at"] is None


async def test_an_instance_first_seen_ending_is_created_and_ended_in_one_report(
    bed_gnocchi: str,
) -> None:
    """A burst VM deleted within one agent cycle: its first report has its samples and says
    shutting-down, and Nova has no such server. Its resources are created and ended at once;
    Gnocchi started them after the report was received (its own clock, at creation) and
    refuses an end before the start, so they end when they started."""
    url = bed_gnocchi
    body, u = report()
    body["instances"][0]["state"] = "shutting-down"
    sink = await start_sink(url, Nova(u, None))
    await write(sink, "k1", body, time.time())
    await sink.close()
    for rtype, rid in [("instance", u), *((t, f"{u}-{d}") for t, d in DEVICES.items())]:
        resource = await read(url, f"/v1/resource/{rtype}/{rid}")
        assert resource["ended_at"] == resource["started_at"], rid


async def test_latest_reads_back_the_newest_value_of_each_meter_and_device(
    bed_gnocchi: str,
) -> None:
    """What the dashboard's Public cloud tab shows: per instance, vNIC and disk, each meter's
    newest value and its time, as written (once metricd has processed them); an instance
    Gnocchi does not have is None."""
    url = bed_gnocchi
    body, u = report()
    sink = await start_sink(url, Nova(u, facts(u)))
    await write(sink, "k1", body, NOW)
    newest: dict[tuple[str | None, str], tuple[str, float]] = {}
    for s in sorted(body["samples"], key=lambda s: s["timestamp"]):
        if s["instance_uuid"] == u:
            newest[(s.get("device"), s["meter"])] = (s["timestamp"], float(s["volume"]))

    async def read_back() -> dict[tuple[str | None, str], tuple[str, float]] | None:
        got = await sink.latest(u)
        assert got is not None
        found = {(g["device"] if g["resource_type"] != "instance" else None, g["meter"]):
                 (g["timestamp"], g["value"]) for g in got}  # fmt: skip
        return found if len(found) == len(newest) else None

    deadline = time.monotonic() + 60
    found = await read_back()
    while found is None and time.monotonic() < deadline:  # metricd's processing delay
        await asyncio.sleep(1)
        found = await read_back()
    assert found is not None, "metricd did not process the measures within 60 s"
    assert {k: (when(t), v) for k, (t, v) in found.items()} == {
        k: (when(t), v) for k, (t, v) in newest.items()
    }
    assert await sink.latest(str(uuid.uuid4())) is None
    await sink.close()

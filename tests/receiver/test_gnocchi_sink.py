"""The Gnocchi sink's requests, against a small in-process HTTP server that answers the few
Gnocchi calls the sink makes and records them: which archive policies, resource types,
resources, attributes and measures it sends. Fast and without the bed; the same behaviour
against the bed's real Gnocchi is in test_gnocchi_refusals_bed.py and test_openstack.py."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from azfed import wire
from azfed.receiver.nova import ServerFacts
from azfed.receiver.sinks import Batch
from azfed.receiver.sinks.gnocchi import RESOURCE_TYPES, GnocchiSink, basic_auth

from tests.receiver.conftest import NOW, example

UUID = "6f1c7a52-3b1e-4c2a-9d1e-0a5b8e2f4c11"
ENI = f"{UUID}-eni-0a1b2c3d4e5f60718"
DISK = f"{UUID}-xvda"
# the attributes an azfed before contract 2 gave the instance type
OLD_INSTANCE_TYPE = {
    k: v
    for k, v in RESOURCE_TYPES["instance"].items()
    if k in ("display_name", "flavor_id", "host", "image_ref", "server_group", "flavor_name")
}


@dataclass
class Gnocchi:
    """What the server holds and every request it got: (method, path, content type, body)."""

    policies: set[str] = field(default_factory=set)
    types: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str, str, Any]] = field(default_factory=list)

    def made(self, method: str, prefix: str) -> list[Any]:
        return [body for m, p, _, body in self.calls if m == method and p.startswith(prefix)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.text()) if request.can_read_body else None
        path, method = request.path, request.method
        self.calls.append((method, path, request.content_type, body))
        parts = path.strip("/").split("/")[1:]  # without "v1"
        return self._answer(method, parts, body)

    def _answer(self, method: str, parts: list[str], body: Any) -> web.StreamResponse:
        kind, rest = parts[0], parts[1:]
        if kind == "archive_policy":
            if method == "POST":
                self.policies.add(body["name"])
                return web.json_response(body, status=201)
            return web.json_response({}, status=200 if rest[0] in self.policies else 404)
        if kind == "resource_type":
            return self._resource_type(method, rest, body)
        if kind == "resource":
            return self._resource(method, rest, body)
        if kind == "search":
            found = [
                r
                for r in self.resources.values()
                if r.get("instance_id") == body["="]["instance_id"]
            ]
            return web.json_response([r for r in found if r["type"] == rest[1]])
        return web.json_response({}, status=202)  # batch measures

    def _resource_type(self, method: str, rest: list[str], body: Any) -> web.StreamResponse:
        if method == "POST":
            self.types[body["name"]] = body["attributes"]
            return web.json_response(body, status=201)
        if rest[0] not in self.types:
            return web.json_response({}, status=404)
        if method == "PATCH":
            for op in body:
                self.types[rest[0]][op["path"].rsplit("/", 1)[-1]] = op["value"]
        return web.json_response({"name": rest[0], "attributes": self.types[rest[0]]})

    def _resource(self, method: str, rest: list[str], body: Any) -> web.StreamResponse:
        if method == "POST":
            self.resources[body["id"]] = {**body, "type": rest[0]}
            return web.json_response(body, status=201)
        rid = rest[1]
        found = self.resources.get(rid) or next(
            (r for r in self.resources.values() if r.get("uuid") == rid), None
        )
        if found is None:
            return web.json_response({}, status=404)
        found.update(body)
        return web.json_response(found)


@pytest.fixture
async def gnocchi() -> AsyncIterator[tuple[Gnocchi, str]]:
    g = Gnocchi()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", g.handle)
    server = TestServer(app)
    await server.start_server()
    try:
        yield g, str(server.make_url("/"))
    finally:
        await server.close()


FACTS = ServerFacts(
    uuid=UUID,
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


class Nova:
    """The facts NovaClient.server would give, changeable by the test; None: no such server."""

    def __init__(self, facts: ServerFacts | None) -> None:
        self.facts = facts
        self.fresh: list[str] = []

    async def __call__(self, uuid: str, *, fresh: bool = False) -> ServerFacts | None:
        if fresh:
            self.fresh.append(uuid)
        return self.facts if uuid == UUID else None


async def _sink(url: str, nova: Nova | None = None, **kw: Any) -> GnocchiSink:
    sink = GnocchiSink(url, basic_auth("admin"), facts=nova, **kw)
    await sink.start()
    return sink


async def test_a_fresh_gnocchi_gets_ceilometers_archive_policies_and_resource_types(
    gnocchi: tuple[Gnocchi, str],
) -> None:
    g, url = gnocchi
    sink = await _sink(url)
    await sink.close()
    assert g.policies == {"ceilometer-low", "ceilometer-low-rate"}
    assert set(g.types) == {"instance", "instance_network_interface", "instance_disk"}
    assert {"flavor_name", "launched_at", "availability_zone", "server_group"} <= set(
        g.types["instance"]
    )
    assert g.types["instance_disk"]["instance_id"] == {"type": "uuid", "required": True}


async def test_an_older_instance_type_gets_the_attributes_it_lacks_as_json_patch(
    gnocchi: tuple[Gnocchi, str],
) -> None:
    """As ceilometer-upgrade does: only what is missing is added, nothing is recreated."""
    g, url = gnocchi
    g.types["instance"] = dict(OLD_INSTANCE_TYPE)
    sink = await _sink(url)
    await sink.close()
    [patch] = g.made("PATCH", "/v1/resource_type/instance")
    assert sorted(op["path"] for op in patch) == [
        "/attributes/availability_zone", "/attributes/created_at", "/attributes/deleted_at",
        "/attributes/launched_at",
    ]  # fmt: skip
    content_types = {c for m, p, c, _ in g.calls if m == "PATCH"}
    assert content_types == {"application/json-patch+json"}
    assert set(g.types["instance"]) == set(RESOURCE_TYPES["instance"])


async def test_each_sample_goes_to_its_resource_under_its_meters_policy_and_unit(
    gnocchi: tuple[Gnocchi, str],
) -> None:
    """The instance, its vNIC and its disk are created with Ceilometer's attributes (the
    flavor's id, not its name; server_group from metering.server_group), and each metric
    carries gnocchi_resources.yaml's archive policy and Ceilometer's unit."""
    g, url = gnocchi
    sink = await _sink(url, Nova(FACTS))
    report = example("report-full")
    report["instances"] = report["instances"][:1]
    await sink.write(Batch("k", report, NOW))
    await sink.close()
    instance = g.resources[UUID]
    assert {k: instance[k] for k in ("flavor_id", "flavor_name", "server_group", "host")} == {
        "flavor_id": "3f1e9c0a-flavor-id", "flavor_name": "m1.small", "server_group": "web",
        "host": "compute-aws",
    }  # fmt: skip
    assert (instance["availability_zone"], instance["launched_at"]) == (
        "aws-az",
        "2025-01-15T09:58:12.000000",
    )
    assert g.resources[ENI] == {"id": ENI, "name": "eni-0a1b2c3d4e5f60718", "instance_id": UUID,
                                "project_id": "p1", "user_id": "u1",
                                "type": "instance_network_interface"}  # fmt: skip
    assert (g.resources[DISK]["type"], g.resources[DISK]["name"]) == ("instance_disk", "xvda")
    [measures] = g.made("POST", "/v1/batch/resources/metrics/measures")
    assert set(measures) == {UUID, ENI, DISK}
    got = {
        meter: (m["archive_policy_name"], m["unit"])
        for metrics in measures.values()
        for meter, m in metrics.items()
    }
    assert got == {m: (f.archive_policy, f.unit) for m, f in wire.METERS.items()}


async def test_an_operators_archive_policy_takes_every_metric(
    gnocchi: tuple[Gnocchi, str],
) -> None:
    """[gnocchi] archive_policy set: Ceilometer's `archive_policy` option, one for all."""
    g, url = gnocchi
    g.policies.add("mine")
    sink = await _sink(url, Nova(FACTS), archive_policy="mine")
    await sink.write(Batch("k", example("report-full"), NOW))
    await sink.close()
    [measures] = g.made("POST", "/v1/batch/resources/metrics/measures")
    policies = {m["archive_policy_name"] for ms in measures.values() for m in ms.values()}
    assert policies == {"mine"}
    assert g.made("POST", "/v1/archive_policy") == []


async def test_a_resize_and_a_rename_are_patched_and_only_what_changed(
    gnocchi: tuple[Gnocchi, str],
) -> None:
    g, url = gnocchi
    nova = Nova(FACTS)
    sink = await _sink(url, nova)
    report = example("report-full")
    await sink.write(Batch("k1", report, NOW))
    await sink.write(Batch("k2", report, NOW + 60))
    assert g.made("PATCH", "/v1/resource/") == []  # nothing changed: nothing sent
    nova.facts = dataclasses.replace(
        FACTS, flavor_id="77-flavor-id", flavor_name="m1.large", name="web-1-renamed"
    )
    await sink.write(Batch("k3", report, NOW + 120))
    await sink.close()
    assert g.made("PATCH", f"/v1/resource/instance/{UUID}") == [
        {"display_name": "web-1-renamed", "flavor_id": "77-flavor-id", "flavor_name": "m1.large"}
    ]
    assert g.resources[UUID]["flavor_name"] == "m1.large"


async def test_ended_at_is_set_on_the_instance_and_its_devices_once_nova_deleted_it(
    gnocchi: tuple[Gnocchi, str],
) -> None:
    """The public cloud reports the VM ending and Nova (asked afresh, not from the cache) has
    no such server: the instance, its vNIC and its disk get ended_at, once."""
    g, url = gnocchi
    nova = Nova(FACTS)
    sink = await _sink(url, nova)
    report = example("report-full")
    report["instances"] = report["instances"][:1]
    await sink.write(Batch("k1", report, NOW))
    nova.facts = None
    ending = json.loads(json.dumps(report))
    ending["instances"][0]["state"] = "shutting-down"
    ending["samples"] = []
    await sink.write(Batch("k2", ending, NOW + 60))
    await sink.write(Batch("k3", ending, NOW + 120))
    await sink.close()
    assert nova.fresh == [UUID]
    ended = {rid: r.get("ended_at") for rid, r in g.resources.items()}
    assert ended == dict.fromkeys((UUID, ENI, DISK), "2025-01-15T12:01:00+00:00")
    assert len(g.made("PATCH", "/v1/resource/")) == 3


async def test_a_running_instance_nova_does_not_know_is_not_ended(
    gnocchi: tuple[Gnocchi, str],
) -> None:
    """An orphan still running (Nova has no server, the cloud says running) keeps its
    resource open: its usage is real, and reconciliation reports the orphan."""
    g, url = gnocchi
    sink = await _sink(url, Nova(None))
    report = example("report-full")
    report["instances"] = report["instances"][:1]
    await sink.write(Batch("k1", report, NOW))
    await sink.write(Batch("k2", report, NOW + 60))
    await sink.close()
    assert g.made("PATCH", "/v1/resource/") == []
    assert (g.resources[UUID]["flavor_id"], g.resources[UUID]["display_name"]) == (
        "",
        "i-0abc1234def567890",
    )


async def test_a_husk_nova_still_has_is_not_ended_and_nova_is_asked_afresh_once_a_minute(
    gnocchi: tuple[Gnocchi, str],
) -> None:
    """Terminated in the public cloud but still in Nova (someone used the AWS console): the
    resource stays open; as the cloud lists it for an hour, Nova is not asked afresh about it
    in every report."""
    g, url = gnocchi
    nova = Nova(FACTS)
    sink = await _sink(url, nova)
    report = example("report-full")
    report["instances"] = report["instances"][:1]
    report["instances"][0]["state"] = "terminated"
    for k in range(3):
        await sink.write(Batch(f"k{k}", report, NOW + k))
    await sink.close()
    assert nova.fresh == [UUID]
    assert "ended_at" not in g.resources[UUID]

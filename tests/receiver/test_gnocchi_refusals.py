"""One resource Gnocchi refuses never stalls the others: the receiver with its real Gnocchi sink
drops that resource's measures (logged, counted on /metrics, shown by `azfed status`), writes
the rest and accepts the report; Gnocchi failing (5xx) is still a 503 the agent retries.

Gnocchi here is a small aiohttp app that answers as Gnocchi 4.6's REST API does
(gnocchi/rest/api.py: `ResourcesController.post`, `ResourcesMetricsMeasuresBatchController`):
a batch is all or nothing, an unknown resource is a 400 whose description names it
("Unknown resources"), a bad attribute a 400 "Invalid input". A real Gnocchi needs the bed's
MariaDB (its indexer takes no SQLite), so it cannot run among the fast tests; the same refusal
against the bed's real Gnocchi is in test_gnocchi_refusals_bed.py, run with the bed.
"""

from __future__ import annotations

import copy
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from azfed.receiver import status
from azfed.receiver.app import METRICS, RUNNER_KWARGS, create_app
from azfed.receiver.sinks.gnocchi import GnocchiSink, basic_auth
from structlog.testing import capture_logs

from tests.receiver.conftest import NOW, Receiver, example, make_config
from tests.receiver.memory_sink import MemorySink

GOOD, BAD, OTHER = (str(uuidlib.UUID(int=n)) for n in (1, 2, 3))
DROPPED = "azfed_receiver_samples_dropped_total"


def _error(status: int, description: Any) -> web.Response:
    title = {400: "Bad Request", 503: "Service Unavailable"}.get(status, "Error")
    return web.json_response(
        {"code": status, "description": description, "title": title}, status=status
    )


@dataclass
class FakeGnocchi:
    """Gnocchi's answers for what the sink calls; `refuse_*` and `down` steer them."""

    resources: set[str] = field(default_factory=set)
    measures: dict[str, list[float]] = field(default_factory=dict)
    refuse_create: set[str] = field(default_factory=set)
    refuse_measures: set[str] = field(default_factory=set)
    down: bool = False

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/archive_policy/{name}", self.exists)
        app.router.add_get("/v1/resource_type/instance", self.exists)
        app.router.add_post("/v1/resource/instance", self.create)
        app.router.add_post("/v1/batch/resources/metrics/measures", self.batch)
        return app

    async def exists(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def create(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.down:
            return _error(503, "indexer unavailable")
        if body["id"] in self.refuse_create:
            # Ceilometer's `instance` type requires flavor_name; Gnocchi's voluptuous says so
            reason = "required key not provided @ data['flavor_name']"
            return _error(
                400, {"cause": "Invalid input", "reason": reason, "detail": ["flavor_name"]}
            )
        if body["id"] in self.resources:
            return _error(409, f"Resource {body['id']} already exists")
        self.resources.add(body["id"])
        return web.json_response(body, status=201)

    async def batch(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.down:
            return _error(503, "storage unavailable")
        unknown = [
            {"resource_id": rid, "original_resource_id": rid}
            for rid in body
            if rid not in self.resources
        ]
        if unknown:
            return _error(400, {"cause": "Unknown resources", "detail": unknown})
        for rid in body:
            if rid in self.refuse_measures:
                detail = [rid, "cpu_util", "measures", 0, "value"]
                return _error(400, {"cause": "Invalid input", "reason": "bad", "detail": detail})
        for rid, metrics in body.items():  # all or nothing, as Gnocchi's batch
            for metric in metrics.values():
                self.measures.setdefault(rid, []).extend(m["value"] for m in metric["measures"])
        return web.Response(status=202)


def _report(uuids: list[str]) -> dict[str, Any]:
    """report-full's first instance and its first two samples, once per uuid."""
    base = example("report-full")
    inst, samples = base["instances"][0], base["samples"][:2]
    base["instances"] = [{**copy.deepcopy(inst), "instance_uuid": u} for u in uuids]
    base["samples"] = [{**copy.deepcopy(s), "resource_id": u} for u in uuids for s in samples]
    return base


Serve = Callable[..., Awaitable[TestServer]]


@pytest.fixture
def gnocchi() -> FakeGnocchi:
    return FakeGnocchi()


@pytest.fixture
async def rcv(
    gnocchi: FakeGnocchi,
    aiohttp_server: Serve,
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    tmp_path: Path,
) -> Receiver:
    fake = await aiohttp_server(gnocchi.app())
    sink = GnocchiSink(str(fake.make_url("/")), basic_auth("admin"))
    app = create_app(make_config(tmp_path), sinks=[sink], clock=lambda: NOW)
    server = TestServer(app)
    await server.start_server(**RUNNER_KWARGS)
    return Receiver(await aiohttp_client(server), MemorySink(), app)


async def _dropped(rcv: Receiver, reason: str) -> float | None:
    value: float | None = rcv.app[METRICS].registry.get_sample_value(
        DROPPED, {"sink": "gnocchi", "reason": reason}
    )
    return value


async def test_a_resource_gnocchi_refuses_to_create_loses_its_measures_only(
    rcv: Receiver, gnocchi: FakeGnocchi, tmp_path: Path
) -> None:
    """Gnocchi answers 400 to one resource's creation: the other instances' measures are
    written, the report is accepted, and the drop is logged, counted and shown by status."""
    gnocchi.refuse_create = {BAD}
    with capture_logs() as logs:
        code, answer, _ = await rcv.post(_report([GOOD, BAD, OTHER]))
    assert code == 200, answer
    assert sorted(gnocchi.measures) == [GOOD, OTHER]
    assert BAD not in gnocchi.resources
    assert await _dropped(rcv, "resource_refused") == 2
    [event] = [e for e in logs if e["event"] == "gnocchi.dropped"]
    assert (event["resource_id"], event["reason"]) == (BAD, "resource_refused")
    text = await (await rcv.client.get("/metrics")).text()
    assert f'{DROPPED}{{reason="resource_refused",sink="gnocchi"}} 2.0' in text

    shown = await status.collect(make_config(tmp_path), now=NOW + 5)
    [row] = shown["dropped"]
    assert (row["resource_id"], row["samples"], row["reason"]) == (BAD, 2, "resource_refused")
    assert "flavor_name" in row["detail"]
    assert f"gnocchi {BAD}: 2 samples dropped" in status.render(shown)


async def test_measures_gnocchi_refuses_for_one_resource_do_not_block_the_others(
    rcv: Receiver, gnocchi: FakeGnocchi
) -> None:
    """A 4xx on the batch call: the set is halved until the refused resource stands alone, so
    the other resources' measures are written and only its own are dropped."""
    gnocchi.refuse_measures = {BAD}
    code, answer, _ = await rcv.post(_report([GOOD, BAD, OTHER]))
    assert code == 200, answer
    assert sorted(gnocchi.measures) == [GOOD, OTHER]
    assert await _dropped(rcv, "measures_refused") == 2


async def test_a_resource_deleted_behind_our_back_is_created_again_not_dropped(
    rcv: Receiver, gnocchi: FakeGnocchi
) -> None:
    """Gnocchi's "Unknown resources" for a resource the sink created earlier: it is created
    again and its measures written, in the same report."""
    report = _report([GOOD, OTHER])
    assert (await rcv.post(report))[0] == 200
    gnocchi.resources.discard(GOOD)
    report["seq"] += 1
    assert (await rcv.post(report))[0] == 200
    assert len(gnocchi.measures[GOOD]) == 4
    assert await _dropped(rcv, "measures_refused") is None


@pytest.mark.parametrize("when", ["create", "batch"])
async def test_gnocchi_failing_is_still_a_503_the_agent_retries(
    rcv: Receiver, gnocchi: FakeGnocchi, when: str
) -> None:
    """A 5xx from Gnocchi drops nothing: the report is answered 503, and accepted whole once
    Gnocchi is back."""
    report = _report([GOOD, OTHER])
    if when == "batch":
        assert (await rcv.post(report))[0] == 200
        report["seq"] += 1
    gnocchi.down = True
    code, _, headers = await rcv.post(report)
    assert code == 503
    assert "Retry-After" in headers
    gnocchi.down = False
    assert (await rcv.post(report))[0] == 200
    assert sorted(gnocchi.measures) == [GOOD, OTHER]
    assert await _dropped(rcv, "resource_refused") is None

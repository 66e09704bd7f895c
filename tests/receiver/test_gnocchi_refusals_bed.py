"""Against the bed's REAL Gnocchi: one resource Gnocchi refuses never stalls the others. The
receiver with its real Gnocchi sink drops that resource's measures (logged, counted on /metrics,
shown by `azfed status`), writes the rest and accepts the report; Gnocchi failing (5xx) is still
a 503 the agent retries, and the report is accepted whole once Gnocchi answers again.

The sink reaches Gnocchi through tests/faultproxy.py, which forwards every call and answers in
Gnocchi's place only what a test injects. The refusals are Gnocchi's own:
- at creation, a display_name longer than the `instance` type's 255 characters (Gnocchi's
  schema check, 400). Nova never names a server so (its names stop at 255 too), so the sink's
  Nova facts are a function here that gives the refused instance that name;
- on measures, a resource another Gnocchi user created (Ceilometer, say), whose metrics a
  non-admin sink user may not write: Gnocchi's policy refuses the whole batch (403);
- "Unknown resources", for a resource deleted through Gnocchi's API behind the sink's back.
Only the 5xx is injected: the bed's Gnocchi cannot be made to fail one call and then recover.

Each test uses fresh instance UUIDs, so tests sharing the bed never see each other's resources.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from azfed import wire
from azfed.config import AzfedConfig
from azfed.receiver import status
from azfed.receiver.app import METRICS, RUNNER_KWARGS, create_app
from azfed.receiver.nova import ServerFacts
from azfed.receiver.sinks.gnocchi import Facts, GnocchiSink, basic_auth
from structlog.testing import capture_logs

from testbed.openstack import HOST, PORTS, OpenStackBed
from tests.faultproxy import FaultProxy, serve_fault_proxy
from tests.receiver.conftest import AGENT, SECRET, make_config

GNOCCHI = f"http://{HOST}:{PORTS['gnocchi-api']}"
CREATE = "/v1/resource/instance"
BATCH = "/v1/batch/resources/metrics/measures"
DROPPED = "azfed_receiver_samples_dropped_total"
# The samples sit in 5-minute slots (ceilometer-low's granularity, the sink's default archive
# policy), one Gnocchi point each, so what was written reads back value for value. Slot 0 is an
# hour back: every slot used is in the past and within the receiver's horizons (days).
SLOT_S = 300
FIRST_SLOT = (int(time.time()) // SLOT_S - 12) * SLOT_S


def _iso(t: float) -> str:
    return datetime.fromtimestamp(int(t), UTC).isoformat().replace("+00:00", "Z")


def _value(slot: int) -> float:
    return 10.0 * (slot + 1)


def _uuids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


def _report(uuids: list[str], slots: Collection[int], seq: int = 1) -> dict[str, Any]:
    """A report of `uuids`, each with one memory.usage sample per slot (of value
    `_value(slot)`)."""
    now = _iso(time.time())

    def inst(u: str) -> dict[str, Any]:
        return {"instance_uuid": u, "provider": "ec2", "remote_id": f"i-0{u.replace('-', '')[:16]}",
                "state": "running", "ips": {"private": ["10.0.1.9"], "public": []},
                "observed_at": now}  # fmt: skip

    def sample(u: str, slot: int) -> dict[str, Any]:
        return {"instance_uuid": u, "resource_type": "instance", "meter": "memory.usage",
                "unit": "MiB", "type": "gauge", "volume": _value(slot),
                "timestamp": _iso(FIRST_SLOT + slot * SLOT_S)}  # fmt: skip

    return {
        "version": wire.CONTRACT_VERSION, "agent_id": AGENT, "seq": seq, "sent_at": now,
        "instances": [inst(u) for u in uuids],
        "samples": [sample(u, slot) for u in uuids for slot in slots],
    }  # fmt: skip


def _facts(long_names: Collection[str]) -> Facts:
    """Nova's facts of a server as the sink gets them; the servers in `long_names` are named
    longer than Gnocchi's `instance` type takes."""

    async def facts(server_id: str, *, fresh: bool = False) -> ServerFacts:
        name = "x" * 300 if server_id in long_names else f"burst-{server_id[:8]}"
        return ServerFacts(
            uuid=server_id, name=name, flavor_id="1", flavor_name="m1.tiny", host="compute-aws",
            image_ref="", az="aws-az", project_id="", user_id="", status="ACTIVE",
            created_at="", metadata={},
        )  # fmt: skip

    return facts


def _gnocchi(user: str = "admin") -> Any:
    """gnocchiclient straight to the bed's Gnocchi (not through the fault proxy)."""
    from gnocchiclient import auth, client

    plugin = auth.GnocchiBasicPlugin(user=user, endpoint=GNOCCHI)
    return client.Client("1", session_options={"auth": plugin})


def _measures(resource_id: str) -> list[float]:
    """The memory.usage points Gnocchi holds for the resource, oldest first."""
    rows = _gnocchi().metric.get_measures("memory.usage", resource_id=resource_id, refresh=True)
    return [value for _ts, _granularity, value in rows]


def _assert_gone(resource_id: str) -> None:
    from gnocchiclient.exceptions import NotFound

    with pytest.raises(NotFound):
        _gnocchi().resource.get("instance", resource_id)


@dataclass
class Live:
    """A receiver whose Gnocchi sink reaches the bed's Gnocchi through `proxy`."""

    client: TestClient[Any, Any]
    app: web.Application
    proxy: FaultProxy
    config: AzfedConfig

    async def post(self, report: dict[str, Any]) -> tuple[int, str, dict[str, str]]:
        body, headers = wire.encode_report(
            report, secret=SECRET, agent_id=AGENT, seq=report["seq"], now=time.time(), gzip=True
        )
        resp = await self.client.post(wire.REPORTS_PATH, data=body, headers=headers)
        return resp.status, await resp.text(), dict(resp.headers)

    def dropped(self, reason: str) -> float | None:
        """Samples the receiver counted as dropped by the Gnocchi sink for `reason`."""
        labels = {"sink": "gnocchi", "reason": reason}
        value: float | None = self.app[METRICS].registry.get_sample_value(DROPPED, labels)
        return value

    def answers(self, path: str) -> list[int]:
        """The statuses the sink's POSTs to `path` got (Gnocchi's or injected), in order."""
        return [code for method, p, code in self.proxy.seen if (method, p) == ("POST", path)]


MakeLive = Callable[..., Awaitable[Live]]


@pytest.fixture
async def make_live(openstack_bed: OpenStackBed, tmp_path: Path) -> AsyncIterator[MakeLive]:
    """make_live(user=..., long_names=...) -> a Live receiver, its sink signed in to Gnocchi
    as `user`; closed, with its fault proxy, after the test."""
    async with AsyncExitStack() as stack:

        async def make(*, user: str = "admin", long_names: Collection[str] = ()) -> Live:
            proxy = await stack.enter_async_context(serve_fault_proxy(GNOCCHI))
            sink = GnocchiSink(proxy.url, basic_auth(user), facts=_facts(long_names))
            config = make_config(tmp_path)
            app = create_app(config, sinks=[sink], clock=time.time)
            server = TestServer(app)
            client = TestClient(server)
            stack.push_async_callback(client.close)
            await server.start_server(**RUNNER_KWARGS)
            await client.start_server()
            return Live(client, app, proxy, config)

        yield make


async def _gnocchi_ready() -> str:
    """The sink's archive policies and resource types, made as admin (a non-admin user may
    not create them); returns memory.usage's archive policy."""
    admin = GnocchiSink(GNOCCHI, basic_auth("admin"))
    await admin.start()
    try:
        await admin.check()
    finally:
        await admin.close()
    return wire.METERS["memory.usage"].archive_policy


async def test_a_resource_gnocchi_refuses_to_create_loses_its_measures_only(
    make_live: MakeLive,
) -> None:
    """Gnocchi answers 400 to one resource's creation: the other instances' measures are
    written, the report is accepted, and the drop is logged, counted and shown by status."""
    good, bad, other = _uuids(3)
    live = await make_live(long_names={bad})
    with capture_logs() as logs:
        code, text, _ = await live.post(_report([good, bad, other], slots=(0, 1)))
    assert code == 200, text
    assert sorted(live.answers(CREATE)) == [201, 201, 400]  # nothing injected: Gnocchi's own
    assert _measures(good) == _measures(other) == [_value(0), _value(1)]
    _assert_gone(bad)
    assert live.dropped("resource_refused") == 2
    [event] = [e for e in logs if e["event"] == "gnocchi.dropped"]
    assert (event["resource_id"], event["reason"]) == (bad, "resource_refused")
    metrics = await (await live.client.get("/metrics")).text()
    assert f'{DROPPED}{{reason="resource_refused",sink="gnocchi"}} 2.0' in metrics

    shown = await status.collect(live.config)
    [row] = shown["dropped"]
    assert (row["resource_id"], row["samples"], row["reason"]) == (bad, 2, "resource_refused")
    assert "display_name" in row["detail"]  # Gnocchi's answer names the attribute
    assert f"gnocchi {bad}: 2 samples dropped" in status.render(shown)


async def test_measures_gnocchi_refuses_for_one_resource_do_not_block_the_others(
    make_live: MakeLive,
) -> None:
    """Gnocchi refuses a batch (403: one resource's metric belongs to another, non-admin
    user): the set is halved until the refused resource stands alone, so the other resources'
    measures are written and only its own are dropped."""
    good, bad, other = sorted(_uuids(3))  # the refused one in the middle: both halves split
    policy = await _gnocchi_ready()
    _gnocchi(user="ceilometer").resource.create(
        "instance",
        {"id": bad, "display_name": "ceilometers-own", "flavor_id": "1", "flavor_name": "m1.tiny",
         "host": "compute-aws", "metrics": {"memory.usage": {"archive_policy_name": policy}}},
    )  # fmt: skip
    live = await make_live(user="azfed-receiver")
    code, text, _ = await live.post(_report([good, bad, other], slots=(0, 1)))
    assert code == 200, text
    # all three, then [good] and [bad, other], then [bad] alone (dropped) and [other]
    assert live.answers(BATCH) == [403, 202, 403, 403, 202]
    assert _measures(good) == _measures(other) == [_value(0), _value(1)]
    assert _measures(bad) == []
    assert live.dropped("measures_refused") == 2
    assert live.dropped("resource_refused") is None
    [row] = (await status.collect(live.config))["dropped"]
    assert (row["resource_id"], row["samples"], row["reason"]) == (bad, 2, "measures_refused")
    assert row["detail"].startswith("HTTP 403")


async def test_a_resource_deleted_behind_our_back_is_created_again_not_dropped(
    make_live: MakeLive,
) -> None:
    """A resource the sink created earlier is deleted through Gnocchi's API: Gnocchi's
    "Unknown resources" makes the sink create it again and write its measures, in the same
    report."""
    good, other = _uuids(2)
    live = await make_live()
    code, text, _ = await live.post(_report([good, other], slots=(0, 1), seq=1))
    assert code == 200, text
    _gnocchi().resource.delete(good)
    _assert_gone(good)

    code, text, _ = await live.post(_report([good, other], slots=(2, 3), seq=2))
    assert code == 200, text
    assert live.answers(BATCH) == [202, 400, 202]  # "Unknown resources", then written
    assert live.answers(CREATE) == [201, 201, 201]  # the third: `good` again
    assert _measures(good) == [_value(2), _value(3)]  # its new metric: this report's
    assert _measures(other) == [_value(s) for s in range(4)]
    assert live.dropped("measures_refused") is None


@pytest.mark.parametrize("path", [CREATE, BATCH], ids=["create", "batch"])
async def test_gnocchi_failing_is_still_a_503_the_agent_retries(
    make_live: MakeLive, path: str
) -> None:
    """A 5xx from Gnocchi (on a resource's creation or on the batch call) drops nothing: the
    report is answered 503, and accepted whole when the agent sends it again with Gnocchi
    back."""
    good, other = _uuids(2)
    live = await make_live()
    live.proxy.fail(
        "POST", f"^{path}$", 503,
        {"code": 503, "title": "Service Unavailable", "description": "indexer unavailable"},
    )  # fmt: skip
    report = _report([good, other], slots=(0, 1))
    code, _, headers = await live.post(report)
    assert code == 503
    assert "Retry-After" in headers
    assert 503 in live.answers(path)

    live.proxy.clear()
    code, text, _ = await live.post(report)
    assert code == 200, text
    assert _measures(good) == _measures(other) == [_value(0), _value(1)]
    assert live.dropped("resource_refused") is None
    assert live.dropped("measures_refused") is None

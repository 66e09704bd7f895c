"""POST and GET /v1/capacity-events on the real receiver app (aiohttp's test server, SQLite):
a driver's signed event is kept once per key and read back by id; bad input gets a 4xx and
changes nothing; and the whole path from a proxy host's report to the scheduler's policy
(ReceiverCapacity reading the real receiver, the engine backing the AZ off)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient, TestServer
from azfed import wire
from azfed.errors import ConfigError
from azfed.nova.outcomes import CapacityReporter, read_secret
from azfed.policy import Flavor, Request
from azfed.policy.capacity_source import CAPACITY_EVENTS_PATH, ReceiverCapacity
from azfed.policy.engine import PolicyEngine
from azfed.receiver.app import RUNNER_KWARGS, create_app
from structlog.testing import capture_logs

from testbed.policies import Host, policy_doc
from tests.receiver.conftest import AGENT, NOW, SECRET, Receiver, make_config

WRITER = AGENT  # a writer's secret is a file in secrets_dir, as an agent's is
UUID = "5e0c1d2a-0000-4000-8000-000000000001"


def event(**changes: Any) -> dict[str, Any]:
    base = {
        "instance_uuid": UUID,
        "az": "aws",
        "flavor": "small",
        "instance_type": "t3.micro",
        "outcome": "failed",
        "reason": "AWS has no capacity for t3.micro in us-east-1a",
        "at": NOW - 5,
    }
    return {**base, **changes}


async def post(
    r: Receiver,
    body: bytes | dict[str, Any],
    *,
    key: str = f"{UUID}:aws:failed",
    secret: bytes = SECRET,
    ts: float = NOW,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    hdrs = {
        "Content-Type": "application/json",
        wire.HEADER_KEY: key,
        wire.HEADER_AGENT: WRITER,
        wire.HEADER_TIMESTAMP: str(int(ts)),
        wire.HEADER_SIGNATURE: wire.sign(secret, "POST", CAPACITY_EVENTS_PATH, int(ts), raw),
        **(headers or {}),
    }
    resp = await r.client.post(CAPACITY_EVENTS_PATH, data=raw, headers=hdrs)
    return resp.status, await resp.json()


async def events(r: Receiver, query: str = "") -> tuple[int, dict[str, Any]]:
    resp = await r.client.get(f"{CAPACITY_EVENTS_PATH}{query}")
    return resp.status, await resp.json()


async def test_an_event_is_kept_once_per_key_and_read_back_after_an_id(receiver: Receiver) -> None:
    status, answer = await post(receiver, event())
    assert (status, answer) == (200, {"accepted": True, "id": 1, "duplicate": False})
    # the writer's retry of the same POST: the same id, nothing added
    assert await post(receiver, event()) == (200, {"accepted": True, "id": 1, "duplicate": True})
    launched = event(outcome="launched", az="os", reason="")
    assert (await post(receiver, launched, key=f"{UUID}:os:launched"))[1]["id"] == 2

    status, doc = await events(receiver)
    assert status == 200
    assert doc["last_id"] == 2
    first = doc["events"][0]
    assert first == {**event(), "id": 1, "writer_id": WRITER, "received_at": NOW}
    assert [e["id"] for e in (await events(receiver, "?after=1"))[1]["events"]] == [2]
    assert (await events(receiver, "?after=2"))[1] == {"events": [], "last_id": 2}


@pytest.mark.parametrize(
    ("body", "status", "error", "key"),
    [
        (b"{", 400, "bad_json", None),
        (b'{"at": NaN}', 400, "bad_json", None),
        (json.dumps(event(outcome="lost")).encode(), 400, "bad_event", "$.outcome"),
        (json.dumps(event(instance_uuid="nope")).encode(), 400, "bad_event", "$.instance_uuid"),
        (json.dumps(event(at=-1)).encode(), 400, "bad_event", "$.at"),
        (json.dumps(event(az="")).encode(), 400, "bad_event", "$.az"),
        (json.dumps(event(extra=1)).encode(), 400, "bad_event", "$"),
        (json.dumps({k: v for k, v in event().items() if k != "flavor"}).encode(), 400,
         "bad_event", "$"),
        (json.dumps(event(reason="x" * 5000)).encode(), 413, "too_large", None),
    ],
)  # fmt: skip
async def test_a_bad_event_is_refused_naming_the_key_and_changes_nothing(
    receiver: Receiver, body: bytes, status: int, error: str, key: str | None
) -> None:
    got, answer = await post(receiver, body)
    assert (got, answer["error"]) == (status, error)
    if key is not None:
        assert key in [p["key"] for p in answer["problems"]]
    assert await events(receiver) == (200, {"events": [], "last_id": 0})


async def test_a_bad_signature_a_stale_timestamp_or_a_reused_key_is_refused(
    receiver: Receiver,
) -> None:
    assert (await post(receiver, event(), secret=b"x" * 40))[0] == 401
    assert (await post(receiver, event(), ts=NOW - 3600))[0] == 401
    assert (await post(receiver, event()))[0] == 200
    status, answer = await post(receiver, event(reason="another"))
    assert (status, answer["error"]) == (422, "key_conflict")
    assert [e["reason"] for e in (await events(receiver))[1]["events"]] == [event()["reason"]]


@pytest.mark.parametrize("query", ["?after=-1", "?after=x", "?limit=0", "?limit=501"])
async def test_a_bad_range_is_refused(receiver: Receiver, query: str) -> None:
    status, answer = await events(receiver, query)
    assert status == 400
    assert answer["error"] in {"bad_after", "bad_limit"}


async def test_a_failure_reported_to_the_receiver_backs_the_az_off_in_the_schedulers_policy(
    tmp_path: Path,
) -> None:
    """The path of a failure: a proxy host POSTs it, the filter's engine reads the receiver
    over HTTP (ReceiverCapacity, as inside nova-scheduler) and sends the next boot of that
    flavor to the next AZ; its state file remembers the last id read."""
    app = create_app(make_config(tmp_path), sinks=[], clock=lambda: NOW)
    server = TestServer(app)
    await server.start_server(**RUNNER_KWARGS)
    try:
        async with TestClient(server) as client:
            r = Receiver(client, None, app)  # type: ignore[arg-type]
            assert (await post(r, event(at=990.0)))[0] == 200
            path = tmp_path / "p.json"
            burst_now = {"burst": {"memory_used_pct": 1}, "return": {"memory_used_pct": 0}}
            path.write_text(json.dumps(policy_doc(**burst_now)))
            engine = PolicyEngine(
                path, state_file=tmp_path / "state.json", clock=lambda: 1000.0,
                capacity_url=str(server.make_url("/")),
            )  # fmt: skip
            hosts = [Host("l1", "local"), Host("p1", "aws"), Host("p2", "os")]
            kept, decision = await asyncio.to_thread(
                engine.filter,
                hosts,
                Request(Flavor("small", 1, 512), instance_uuid=str(uuid.uuid4())),
            )
            assert decision is not None
            assert [h.host for h in kept] == ["p2"]
            assert decision.skipped[0][0] == "aws"
            assert decision.skipped[0][1].endswith("AWS has no capacity for t3.micro in us-east-1a")
            assert engine.flush(5)
            assert json.loads((tmp_path / "state.json").read_text())["capacity_after"] == 1
    finally:
        await server.close()


def test_an_unreachable_receiver_is_logged_and_yields_no_events() -> None:
    source = ReceiverCapacity("http://127.0.0.1:9", structlog.get_logger(), timeout_s=0.2)
    with capture_logs() as logs:
        assert source.new_events(0.0) == []
        assert source.new_events(1.0) == []  # within refresh_s: not tried again
    assert [e["event"] for e in logs] == ["capacity.events_unreadable"]


async def test_the_proxy_hosts_reporter_posts_a_failure_the_receiver_keeps(
    receiver: Receiver,
) -> None:
    """CapacityReporter (the driver's, Nova-free) against the real receiver: kept once, even
    when the driver's POST is retried; a receiver that refuses it is logged, not raised."""
    url = str(receiver.client.make_url("/"))
    reporter = CapacityReporter(url, WRITER, SECRET, structlog.get_logger(), clock=lambda: NOW)
    args = (UUID, "aws", "small", "t3.micro", "AWS has no capacity for t3.micro")
    assert await asyncio.to_thread(reporter.failed, *args)
    assert await asyncio.to_thread(reporter.failed, *args)
    kept = (await events(receiver))[1]["events"]
    assert [(e["az"], e["flavor"], e["instance_type"], e["outcome"]) for e in kept] == [
        ("aws", "small", "t3.micro", "failed")
    ]
    wrong = CapacityReporter(url, WRITER, b"y" * 40, structlog.get_logger(), clock=lambda: NOW)
    with capture_logs() as logs:
        assert not await asyncio.to_thread(wrong.failed, *args)
    [failed] = [e for e in logs if e["event"] == "capacity.report_failed"]
    assert "HTTP 401" in failed["error"]


async def test_the_reporter_posts_a_launch_after_a_failure_under_its_own_key(
    receiver: Receiver,
) -> None:
    """A launch of the same boot is kept beside its failure (keys differ by outcome), so the
    filter ends the AZ's failure streak for the flavor."""
    url = str(receiver.client.make_url("/"))
    reporter = CapacityReporter(url, WRITER, SECRET, structlog.get_logger(), clock=lambda: NOW)
    assert await asyncio.to_thread(reporter.failed, UUID, "aws", "small", "t3.micro", "no room")
    assert await asyncio.to_thread(reporter.launched, UUID, "aws", "small", "t3.micro")
    kept = (await events(receiver))[1]["events"]
    assert [(e["az"], e["flavor"], e["outcome"]) for e in kept] == [
        ("aws", "small", "failed"),
        ("aws", "small", "launched"),
    ]


def test_a_short_or_missing_secret_file_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_bytes(b"abc\n")
    for path in (short, tmp_path / "missing"):
        with pytest.raises(ConfigError) as caught:
            read_secret(path)
        assert caught.value.problems[0].key == "receiver_secret_file"

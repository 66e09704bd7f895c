"""Transport and flow hardening of POST /v1/reports (issue 16): nothing is held before the
signature is checked, slow senders time out, error answers stay small, big reports do not
stall the event loop, and an unknown agent looks like a bad signature."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import io
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from azfed import wire
from azfed.receiver.app import GATE

from tests.receiver.conftest import AGENT, NOW, Receiver, ReceiverFactory, example

SLOW = 16  # the default [receiver] max_inflight


async def _slow_sender(rcv: Receiver, seq: int) -> tuple[asyncio.StreamReader, Any]:
    """A connection that names a known agent and a current timestamp, promises a body of
    1000 bytes, sends one, and holds on; it never knew the secret."""
    server = rcv.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    head = (
        f"POST {wire.REPORTS_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: 1000\r\n{wire.HEADER_AGENT}: {AGENT}\r\n"
        f"{wire.HEADER_TIMESTAMP}: {int(NOW)}\r\n{wire.HEADER_SIGNATURE}: v1={'0' * 64}\r\n"
        f"{wire.HEADER_KEY}: {AGENT}:{seq}\r\n\r\n{{"
    )
    writer.write(head.encode())
    await writer.drain()
    return reader, writer


@contextlib.asynccontextmanager
async def _slow_senders(rcv: Receiver, n: int) -> AsyncIterator[list[Any]]:
    conns = [await _slow_sender(rcv, 1000 + i) for i in range(n)]
    try:
        yield conns
    finally:
        for _, writer in conns:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def test_slow_senders_without_the_secret_do_not_take_the_in_flight_slots(
    receiver: Receiver,
) -> None:
    """16 connections with a known agent id, a current timestamp and one body byte hold no
    in-flight slot: a real report sent meanwhile is accepted, not 429."""
    async with _slow_senders(receiver, SLOW):
        await asyncio.sleep(0.2)  # let the server read every header and wait for the bodies
        assert receiver.app[GATE].count == 0
        status, answer, _ = await receiver.post(example())
        assert (status, answer.get("accepted")) == (200, True)


async def test_a_body_that_does_not_arrive_in_time_is_answered_408_and_holds_nothing(
    make_receiver: ReceiverFactory,
) -> None:
    """[receiver] body_timeout_s bounds how long a sender may trickle its body."""
    rcv = await make_receiver(body_timeout_s=0.3)
    async with _slow_senders(rcv, 1) as [(reader, _)]:
        started = time.monotonic()
        status_line = await asyncio.wait_for(reader.readline(), timeout=5)
        assert status_line.startswith(b"HTTP/1.1 408"), status_line
        assert 0.25 < time.monotonic() - started < 3
    assert rcv.app[GATE].count == 0
    assert await rcv.written() == (0, 0, 0)


async def test_an_unknown_agent_is_answered_exactly_as_a_bad_signature(receiver: Receiver) -> None:
    """Status and body are the same, so a sender cannot probe which agent ids exist."""
    bad_sig = await receiver.post(example(), secret=b"x" * 40)
    unknown = await receiver.post(example(), headers={wire.HEADER_AGENT: "nobody"})
    assert bad_sig[0] == unknown[0] == 401
    assert bad_sig[1] == unknown[1]
    assert bad_sig[1]["error"] == "bad_signature"


async def test_a_20_kb_bad_request_gets_a_small_answer(receiver: Receiver) -> None:
    """Error answers are bounded: long values are cut and echoed once, problems are capped."""
    report = example()
    long_id = "i-" + "x" * 20_000
    report["instances"][0]["remote_id"] = long_id
    report["instances"][1]["remote_id"] = long_id
    for s in report["samples"]:
        s["unit"] = "u" * 2_000
    body = wire.dumps(report)
    assert len(body) > 20_000
    resp = await receiver.client.post(
        wire.REPORTS_PATH,
        data=body,
        headers=wire.signed_headers(
            b"", agent_id=AGENT, seq=report["seq"], body=body, gzip=False, now=NOW
        )
        | {wire.HEADER_SIGNATURE: wire.sign(_secret(), "POST", wire.REPORTS_PATH, int(NOW), body)},
    )
    raw = await resp.read()
    assert resp.status == 400
    assert len(raw) < 8_000, len(raw)
    problems = json.loads(raw)["problems"]
    assert {p["key"] for p in problems} >= {"instances[0].remote_id", "instances[1].remote_id"}
    for p in problems:
        assert len(p["value"]) <= 203  # cut at 200 characters, plus "..."
        assert "xxxxx" not in p["reason"]
        assert "uuuuu" not in p["reason"]  # the value is echoed once, never in the reason


def _secret() -> bytes:
    from tests.receiver.conftest import SECRET

    return SECRET


def _max_size_report(limit: int) -> bytes:
    """A valid report whose body is just under `limit` bytes: many samples over 1,000
    instances (the samples, not the instances, are what fill 8 MiB)."""
    report = example()
    inst0 = report["instances"][0]
    instances = [
        dict(inst0, instance_uuid=str(uuid.UUID(int=i)), remote_id=f"i-{i:017x}")
        for i in range(1, 1001)
    ]
    sample = dict(report["samples"][0])
    samples: list[dict[str, Any]] = []
    report.update(instances=instances, samples=samples)
    size = len(wire.dumps(report))
    per = len(wire.dumps(sample)) + 1
    n = min((limit - size) // per - 1, wire.MAX_SAMPLES)
    for i in range(n):
        seconds = i // 1000
        ts = f"2025-01-15T{10 + seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}Z"
        samples.append(dict(sample, resource_id=instances[i % 1000]["instance_uuid"], timestamp=ts))
    body = wire.encode_body(report, agent_id=AGENT, seq=report["seq"], gzip=False)
    assert limit * 0.9 < len(body) <= limit, len(body)
    return body


def _poll_healthz(host: str, port: int, stop: threading.Event) -> list[float]:
    """GET /healthz every 10 ms from another thread (the test's own loop is the server's, so
    it cannot time a stall of that loop), until `stop`; the latencies in seconds."""
    latencies = []
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        while not stop.is_set():
            started = time.perf_counter()
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200
            latencies.append(time.perf_counter() - started)
            stop.wait(0.01)
    finally:
        conn.close()
    return latencies


async def test_healthz_answers_within_100_ms_while_a_maximum_size_report_is_processed(
    make_receiver: ReceiverFactory,
) -> None:
    """Decoding and validating an 8 MiB report runs off the event loop: /healthz, asked from
    another thread, keeps answering quickly the whole time."""
    limit = 8 * 1024 * 1024
    rcv = await make_receiver(max_body_bytes=limit)
    body = _max_size_report(limit)
    headers = wire.signed_headers(_secret(), agent_id=AGENT, seq=42, body=body, gzip=False, now=NOW)
    stop = threading.Event()
    server = rcv.client.server
    poller = asyncio.ensure_future(asyncio.to_thread(_poll_healthz, server.host, server.port, stop))
    try:
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        resp = await rcv.client.post(wire.REPORTS_PATH, data=io.BytesIO(body), headers=headers)
        took = time.perf_counter() - started
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["samples"] > 40_000
    finally:
        stop.set()
        latencies = await poller
    assert took > 0.5, "the report was processed too fast to measure anything"
    assert len(latencies) >= took / 0.11 - 1, (len(latencies), took)
    assert max(latencies) < 0.1, sorted(latencies)[-5:]


async def test_the_same_seq_in_two_epochs_is_two_reports_and_a_report_without_one_still_counts(
    receiver: Receiver,
) -> None:
    """Keys are <agent>:<epoch>:<seq>: an agent with a new spool (new epoch) restarting at
    the same seq is accepted; a report without an epoch (older agents) keeps <agent>:<seq>."""
    old, new, legacy = example(), example(), example()
    old["epoch"], new["epoch"] = "a1b2c3d4e5f60718", "0f1e2d3c4b5a6978"
    new["samples"][0]["volume"] = 99.0  # another body under the same seq
    answers = [await receiver.post(r) for r in (old, new, legacy)]
    assert [(s, a.get("key")) for s, a, _ in answers] == [
        (200, f"{AGENT}:a1b2c3d4e5f60718:42"),
        (200, f"{AGENT}:0f1e2d3c4b5a6978:42"),
        (200, f"{AGENT}:42"),
    ]
    assert await receiver.written() == (3, 3, 2)


async def test_a_key_that_leaves_out_the_reports_epoch_is_refused(receiver: Receiver) -> None:
    """The key must name the epoch the signed body carries: the headers are not signed."""
    report = example()
    report["epoch"] = "a1b2c3d4e5f60718"
    status, answer, _ = await receiver.post(report, headers={wire.HEADER_KEY: f"{AGENT}:42"})
    assert (status, answer["error"]) == (400, "identity_mismatch")
    assert await receiver.written() == (0, 0, 0)

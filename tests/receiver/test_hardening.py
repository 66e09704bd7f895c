"""Transport and flow hardening of POST /v1/reports (issue 16): nothing is held before the
signature is checked, slow senders time out, error answers stay small, big reports do not
stall the event loop, and an unknown agent looks like a bad signature."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from azfed import wire
from azfed.config import parse_config
from azfed.errors import ConfigError
from azfed.receiver.app import GATE

from tests.receiver.conftest import AGENT, NOW, Receiver, ReceiverFactory, example, restamp

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


# Twice the default [receiver] max_body_bytes: at the default's 8 MiB, a report is now
# processed in under 0.3 s, too little for the loop test below to tell a blocked loop apart.
MAX_BODY = 16 * 1024 * 1024


def _max_size_report(limit: int, now: float) -> bytes:
    """A valid report, current at `now`, whose body is just under `limit` bytes: many samples
    over 1,000 instances (the samples, not the instances, are what fill it)."""
    report = restamp(example(), now)
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
    start = dt.datetime.fromtimestamp(now - 3600, dt.timezone.utc).replace(microsecond=0)
    for i in range(min((limit - size) // per - 1, wire.MAX_SAMPLES)):
        ts = (start + dt.timedelta(seconds=i // 1000)).isoformat()
        samples.append(
            dict(sample, instance_uuid=instances[i % 1000]["instance_uuid"], timestamp=ts)
        )
    body = wire.encode_body(report, agent_id=AGENT, seq=report["seq"], gzip=False)
    assert limit * 0.9 < len(body) <= limit, len(body)
    return body


def _poll_healthz(url: str, stop: threading.Event) -> list[float]:
    """GET /healthz every 10 ms until `stop`; the latencies in seconds."""
    latencies = []
    while not stop.is_set():
        started = time.perf_counter()
        with urllib.request.urlopen(url + "/healthz", timeout=30) as resp:
            resp.read()
            assert resp.status == 200
        latencies.append(time.perf_counter() - started)
        stop.wait(0.01)
    return latencies


@contextlib.contextmanager
def _receiver_process(tmp_path: Path) -> Iterator[str]:
    """`azfed receiver run` in its own process, as in production (a test process's own heap
    would make the garbage collector's pauses the test's, not the receiver's)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / f"agents_{AGENT}").write_bytes(_secret())
    cfg = tmp_path / "receiver.toml"
    cfg.write_text(
        f'[receiver]\nhost = "127.0.0.1"\nport = {port}\nsecrets_dir = "{secrets}"\n'
        f'database_url = "sqlite:///{tmp_path / "state.db"}"\nsinks = ["null"]\n'
        f"max_body_bytes = {MAX_BODY}\n"
    )
    env = {**os.environ, "AZFED_LOG_FORMAT": "json", "AZFED_LOG_LEVEL": "warning"}
    cmd = [sys.executable, "-m", "azfed.cli", "receiver", "run", "--config", str(cfg)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
                assert time.monotonic() < deadline, "the receiver did not start within 60 s"
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def test_healthz_keeps_answering_while_a_maximum_size_report_is_processed(
    tmp_path: Path,
) -> None:
    """Decoding and validating a 16 MiB report runs off the event loop: /healthz, asked all
    along from another thread, keeps answering while the report takes seconds.

    A loop blocked by the report would hold one answer for most of the processing time
    (10 s for an 8 MiB report before; since the typed check about 0.45 s, and a trial that ran
    `_decode_and_parse` on the loop held it 315 ms of 0.42 s; off the loop the longest answer
    took 40 ms of 0.48 s, 98 ms with other work on the cores. Since the plain-text and
    per-sample fast paths 8 MiB took 0.28 s, so the report is now 16 MiB: 0.52 to 1.0 s, the
    longest answer 99 to 114 ms, with other work on the cores; since the one-pass parse 0.25 to
    0.29 s, the longest answer 79 to 113 ms, the parse's hold on the GIL as the typed check's
    was: the report is the contract's largest, so the floor below is 0.2 s). The 100 ms target
    itself is a figure measured on a quiet machine (24-68 ms), not asserted here: `make test`
    runs the bed's tests beside this one on two cores, and scheduling alone moves the maximum
    past 100 ms (115 ms seen)."""
    with _receiver_process(tmp_path) as url:
        now = time.time()
        body = _max_size_report(MAX_BODY, now)
        headers = wire.signed_headers(_secret(), agent_id=AGENT, seq=42, body=body, gzip=False,
                                      now=now)  # fmt: skip
        stop = threading.Event()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            poller = pool.submit(_poll_healthz, url, stop)
            time.sleep(0.05)
            started = time.perf_counter()
            try:
                req = urllib.request.Request(url + wire.REPORTS_PATH, data=body, headers=headers)
                with urllib.request.urlopen(req, timeout=120) as resp:
                    answer = json.load(resp)
            finally:
                took = time.perf_counter() - started
                stop.set()
            latencies = poller.result()
    assert answer["samples"] > 40_000
    assert took > 0.2, "the report was processed too fast to measure anything"
    # processed on the loop, /healthz would wait for nearly all of `took` (the poller asks
    # from the start); three quarters of it leaves room for the parse's hold on the GIL
    # (up to 113 ms of 0.25 s seen) when make test's other session shares the cores
    assert max(latencies) < min(1.0, 0.75 * took), (took, sorted(latencies)[-5:])


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


async def test_a_secret_shorter_than_the_minimum_is_refused_like_an_unknown_agent(
    receiver: Receiver, tmp_path: Path
) -> None:
    """A 31-byte secret on disk: even a report correctly signed with it gets the
    bad-signature answer, and nothing is written."""
    short = b"s" * (wire.MIN_SECRET_BYTES - 1)
    (tmp_path / "secrets" / f"agents_{AGENT}").write_bytes(short)
    status, answer, _ = await receiver.post(example(), secret=short)
    assert (status, answer["error"]) == (401, "bad_signature")
    assert await receiver.written() == (0, 0, 0)


def test_config_check_names_a_short_secret_on_either_side(tmp_path: Path) -> None:
    """[push] secret_file and each secret in [receiver] secrets_dir (with the prefix) must
    hold at least wire.MIN_SECRET_BYTES bytes; each short one is named with its path."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "agents_a1").write_bytes(b"short\n")
    (secrets / "agents_a2").write_bytes(b"k" * wire.MIN_SECRET_BYTES)
    (secrets / "clouds.yaml").write_bytes(b"not a secret, not prefixed")
    (tmp_path / "push-secret").write_bytes(b"tiny")
    with pytest.raises(ConfigError) as err:
        parse_config({
            "receiver": {"secrets_dir": str(secrets), "secrets_prefix": "agents_",
                         "sinks": ["null"]},
            "push": {"url": "https://r.example", "secret_file": str(tmp_path / "push-secret")},
        })  # fmt: skip
    found = {(p.key, p.value) for p in err.value.problems}
    assert found == {
        ("[receiver] secrets_dir", str(secrets / "agents_a1")),
        ("[push] secret_file", str(tmp_path / "push-secret")),
    }
    assert all("at least 32" in p.reason for p in err.value.problems)


async def test_a_file_without_the_secrets_prefix_never_passes_for_a_secret(
    receiver: Receiver, tmp_path: Path
) -> None:
    """By default only agents_<id> files are secrets: a credential beside them (clouds.yaml)
    cannot be used to sign as an "agent" named after it."""
    content = b"clouds:\n  azfed: {auth: {password: long-enough-to-sign-with-0123456789}}\n"
    (tmp_path / "secrets" / "clouds.yaml").write_bytes(content)
    report = example()
    report["agent_id"] = "clouds.yaml"
    status, answer, _ = await receiver.post(report, secret=content.strip())
    assert (status, answer["error"]) == (401, "bad_signature")
    assert await receiver.written() == (0, 0, 0)

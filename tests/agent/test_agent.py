"""The whole agent: moto (seeded CloudWatch) -> collector -> spool -> the real receiver.

In process for the outage and health tests; as `azfed agent run` subprocesses for kill -9 and
SIGTERM, since those are about what survives the process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from azfed.agent.app import Agent
from azfed.config import AzfedConfig, parse_config

from testbed.aws import MotoServer
from tests.agent.helpers import launch, seed
from tests.agent.live_receiver import SECRET, LiveReceiver, serve_receiver
from tests.waiting import until

ROOT = Path(__file__).resolve().parents[2]
AGENT = "agent-e2e"
METERS = ["CPUUtilization", "NetworkIn"]  # seeded in CloudWatch ...
COLLECTED = ["cpu", "network.incoming.bytes"]  # ... and collected as these


def config_doc(moto: MotoServer, tmp: Path, url: str) -> dict[str, Any]:
    (tmp / "secret").write_bytes(SECRET)
    return {
        "agent": {"id": AGENT, "provider": "ec2", "shutdown_deadline_s": 5.0},
        "aws": {"region": "us-east-1", "endpoint_url": moto.endpoint, "max_attempts": 5},
        "collect": {"meters": COLLECTED, "status_checks": True, "interval_s": 1.0,
                    "jitter_s": 0.2},
        "push": {"url": url, "secret_file": str(tmp / "secret"), "flush_interval_s": 1.0,
                 "max_backoff_s": 0.2},
        "spool": {"path": str(tmp / "spool")},
        "health": {"port": 0},
    }  # fmt: skip


def toml(doc: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return str(v)

    return "".join(
        f"[{table}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in keys.items()) + "\n"
        for table, keys in doc.items()
    )


@pytest.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[LiveReceiver]:
    async with serve_receiver(tmp_path, {AGENT: SECRET}) as rcv:
        yield rcv


async def fleet(aws: MotoServer, ec2: Any, n: int = 20) -> None:
    """n federated instances with 3 seeded periods of each metric."""
    ids = await launch(ec2, n)
    seed(aws, list(ids), METERS, points=3, period_s=300)


async def until_written(receiver: LiveReceiver, n_series: int, timeout: float = 60) -> None:
    """Until the receiver has written samples of `n_series` (instance, meter) pairs."""
    await receiver.faults.until(
        lambda: len(receiver.series()) == n_series, f"samples of {n_series} series", timeout
    )


async def run_agent(cfg: AzfedConfig) -> tuple[Agent, asyncio.Event, asyncio.Task[None]]:
    agent = Agent(cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    await asyncio.wait_for(agent.ready.wait(), 30)
    return agent, stop, task


async def test_a_receiver_outage_over_several_cycles_loses_and_duplicates_nothing(
    aws: MotoServer, ec2: Any, tmp_path: Path, receiver: LiveReceiver
) -> None:
    """Down for three cycles, then back: every sample arrives once, reports in seq order."""
    await fleet(aws, ec2)
    down = receiver.faults.answer(503, times=None)
    agent, stop, task = await run_agent(parse_config(config_doc(aws, tmp_path, receiver.url)))
    try:
        await receiver.faults.until(lambda: len(receiver.faults.seen) >= 3, "three attempts")
        await until(lambda: agent.scheduler.state.cycles >= 3, "three collection cycles")
        assert len(agent.spool) >= 2
        assert receiver.sink.batches == []
        receiver.faults.remove(down)
        await until_written(receiver, 20 * len(METERS))
    finally:
        stop.set()
        await task
    assert set(receiver.series().values()) == {3}  # 3 periods each, none twice
    assert receiver.seqs() == list(range(len(receiver.seqs())))


async def test_health_endpoints_tell_liveness_readiness_and_metrics(
    aws: MotoServer, ec2: Any, tmp_path: Path, receiver: LiveReceiver
) -> None:
    """/readyz fails while the receiver is down and passes once it answers; /metrics counts."""
    await fleet(aws, ec2, n=3)
    down = receiver.faults.answer(503, times=None)
    agent, stop, task = await run_agent(parse_config(config_doc(aws, tmp_path, receiver.url)))
    base = f"http://127.0.0.1:{agent.health_port}"
    try:
        async with aiohttp.ClientSession() as http:
            assert (await http.get(base + "/healthz")).status == 200
            await receiver.faults.until(lambda: len(receiver.faults.seen) >= 1, "an attempt")
            ready = await http.get(base + "/readyz")
            assert ready.status == 503
            assert (await ready.json())["checks"]["receiver"] != "ok"
            receiver.faults.remove(down)
            await until_written(receiver, 3 * len(METERS))
            await asyncio.wait_for(agent.pusher.drained.wait(), 30)
            ready = await http.get(base + "/readyz")
            assert ready.status == 200, await ready.text()
            text = await (await http.get(base + "/metrics")).text()
    finally:
        stop.set()
        await task
    assert 'azfed_agent_samples_total{stage="pushed"} 18.0' in text
    assert 'azfed_agent_api_calls_total{action="GetMetricData",api="cloudwatch"}' in text
    assert "azfed_agent_spool_bytes" in text
    assert await receiver.metric("azfed_receiver_samples_total") == 18


def start_agent(cfg_file: Path) -> subprocess.Popen[bytes]:
    with open(cfg_file.with_suffix(".log"), "ab") as log:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, "-m", "azfed.cli", "--log-format", "json", "agent", "run",
             "--config", str(cfg_file)],
            cwd=ROOT, env={**os.environ}, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip


async def test_kill_9_mid_push_then_restart_loses_and_duplicates_nothing(
    aws: MotoServer, ec2: Any, tmp_path: Path, receiver: LiveReceiver
) -> None:
    """SIGKILL while the receiver holds its answer to a POST (it has written the report, the
    agent never hears back); the restarted agent resends that same key, the receiver answers
    it as a duplicate without writing it again, and the agent carries on."""
    await fleet(aws, ec2)
    held = receiver.faults.hold()
    cfg_file = tmp_path / "agent.toml"
    cfg_file.write_text(toml(config_doc(aws, tmp_path, receiver.url)))
    proc = start_agent(cfg_file)
    try:
        await until(lambda: len(receiver.sink.batches) == 1, "the first report written")
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 30)
        assert held.hold is not None
        held.hold.set()
        first = receiver.sink.batches[0].key
        proc = start_agent(cfg_file)
        await receiver.faults.until(
            lambda: len(receiver.series()) == 20 * len(METERS) and len(receiver.seqs()) >= 3,
            "every series written, over several reports",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
    assert receiver.faults.keys().count(first) == 2  # the same key, sent again once
    assert await receiver.metric("azfed_receiver_reports_total", outcome="duplicate") == 1
    assert set(receiver.series().values()) == {3}
    assert receiver.seqs() == list(range(len(receiver.seqs())))


async def test_sigterm_spools_what_it_cannot_send_and_the_next_start_sends_it(
    aws: MotoServer, ec2: Any, tmp_path: Path, receiver: LiveReceiver
) -> None:
    """With the receiver down, SIGTERM exits 0 within the deadline, leaving reports spooled;
    the next start delivers them."""
    await fleet(aws, ec2, n=5)
    down = receiver.faults.answer(503, times=None)
    cfg_file = tmp_path / "agent.toml"
    cfg_file.write_text(toml(config_doc(aws, tmp_path, receiver.url)))
    proc = start_agent(cfg_file)
    await receiver.faults.until(lambda: len(receiver.faults.seen) >= 2, "two attempts")
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 30) == 0
    assert list((tmp_path / "spool").glob("*.rep"))
    receiver.faults.remove(down)
    proc = start_agent(cfg_file)
    try:
        # every series complete (its 3 periods), not only begun: the spooled reports and the
        # new cycle's arrive over several POSTs, and a slow machine is still between them
        await receiver.faults.until(
            lambda: (
                len(receiver.series()) == 5 * len(METERS) and min(receiver.series().values()) >= 3
            ),
            "every series' 3 values written",
            60,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
    assert set(receiver.series().values()) == {3}

"""The whole agent: moto (seeded CloudWatch) -> collector -> spool -> a receiver double.

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
from tests.agent.receiver_double import SECRET, Double, serve

ROOT = Path(__file__).resolve().parents[2]
METERS = ["cpu_util", "network.incoming.bytes"]


def config_doc(moto: MotoServer, tmp: Path, url: str) -> dict[str, Any]:
    (tmp / "secret").write_bytes(SECRET)
    return {
        "agent": {"id": "agent-e2e", "provider": "ec2", "shutdown_deadline_s": 5.0},
        "aws": {"region": "us-east-1", "endpoint_url": moto.endpoint, "max_attempts": 5},
        "collect": {"meters": METERS, "status_checks": True, "interval_s": 1.0,
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
async def double() -> AsyncIterator[tuple[Double, str]]:
    d = Double()
    runner, url = await serve(d)
    yield d, url
    await runner.cleanup()


async def fleet(aws: MotoServer, ec2: Any, n: int = 20) -> set[tuple[str, str, str]]:
    """n federated instances with 3 seeded periods; answer the samples the receiver must get."""
    ids = await launch(ec2, n)
    seed(aws, list(ids), METERS, points=3, period_s=300)
    return {(ids[i], m, "") for i in ids for m in METERS}


async def until(d: Double, check: Any, timeout: float = 60) -> None:
    async def wait() -> None:
        while not check():
            d.got.clear()
            await d.got.wait()

    await asyncio.wait_for(wait(), timeout)


def series(d: Double) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for r, m, _ in d.samples():
        out[(r, m)] = out.get((r, m), 0) + 1
    return out


async def run_agent(cfg: AzfedConfig) -> tuple[Agent, asyncio.Event, asyncio.Task[None]]:
    agent = Agent(cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    await asyncio.wait_for(agent.ready.wait(), 30)
    return agent, stop, task


async def test_a_receiver_outage_over_several_cycles_loses_and_duplicates_nothing(
    aws: MotoServer, ec2: Any, tmp_path: Path, double: tuple[Double, str]
) -> None:
    """Down for three cycles, then back: every sample arrives once, reports in seq order."""
    d, url = double
    await fleet(aws, ec2)
    d.down = True
    agent, stop, task = await run_agent(parse_config(config_doc(aws, tmp_path, url)))
    try:
        await until(d, lambda: len(d.requests) >= 3)
        while agent.scheduler.state.cycles < 3:
            await asyncio.sleep(0.1)
        assert len(agent.spool) >= 2
        d.down = False
        await until(d, lambda: len(series(d)) == 20 * len(METERS))
    finally:
        stop.set()
        await task
    assert set(series(d).values()) == {3}  # 3 periods each, none twice
    assert d.seqs() == sorted(d.seqs())
    assert d.seqs() == list(range(len(d.seqs())))


async def test_health_endpoints_tell_liveness_readiness_and_metrics(
    aws: MotoServer, ec2: Any, tmp_path: Path, double: tuple[Double, str]
) -> None:
    """/readyz fails while the receiver is down and passes once it answers; /metrics counts."""
    d, url = double
    await fleet(aws, ec2, n=3)
    d.down = True
    agent, stop, task = await run_agent(parse_config(config_doc(aws, tmp_path, url)))
    base = f"http://127.0.0.1:{agent.health_port}"
    try:
        async with aiohttp.ClientSession() as http:
            assert (await http.get(base + "/healthz")).status == 200
            await until(d, lambda: len(d.requests) >= 1)
            ready = await http.get(base + "/readyz")
            assert ready.status == 503
            assert (await ready.json())["checks"]["receiver"] != "ok"
            d.down = False
            await until(d, lambda: len(series(d)) == 3 * len(METERS))
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


def start_agent(cfg_file: Path) -> subprocess.Popen[bytes]:
    with open(cfg_file.with_suffix(".log"), "ab") as log:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, "-m", "azfed.cli", "--log-format", "json", "agent", "run",
             "--config", str(cfg_file)],
            cwd=ROOT, env={**os.environ}, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip


async def test_kill_9_mid_push_then_restart_loses_and_duplicates_nothing(
    aws: MotoServer, ec2: Any, tmp_path: Path, double: tuple[Double, str]
) -> None:
    """SIGKILL while the receiver holds a POST (it has stored the report, the agent never
    hears back); the restarted agent resends that same key and then carries on."""
    d, url = double
    await fleet(aws, ec2)
    d.hold = asyncio.Event()
    cfg_file = tmp_path / "agent.toml"
    cfg_file.write_text(toml(config_doc(aws, tmp_path, url)))
    proc = start_agent(cfg_file)
    try:
        await until(d, lambda: len(d.order) >= 1)
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 30)
        held = d.order[0]
        d.hold.set()
        d.hold = None
        proc = start_agent(cfg_file)
        await until(d, lambda: len(series(d)) == 20 * len(METERS) and len(d.order) >= 3)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
    assert [k for k, s in d.requests].count(held) >= 2  # the same key, sent again
    assert set(series(d).values()) == {3}
    assert d.seqs() == list(range(len(d.seqs())))


async def test_sigterm_spools_what_it_cannot_send_and_the_next_start_sends_it(
    aws: MotoServer, ec2: Any, tmp_path: Path, double: tuple[Double, str]
) -> None:
    """With the receiver down, SIGTERM exits 0 within the deadline, leaving reports spooled;
    the next start delivers them."""
    d, url = double
    await fleet(aws, ec2, n=5)
    d.down = True
    cfg_file = tmp_path / "agent.toml"
    cfg_file.write_text(toml(config_doc(aws, tmp_path, url)))
    proc = start_agent(cfg_file)
    await until(d, lambda: len(d.requests) >= 2)
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 30) == 0
    assert list((tmp_path / "spool").glob("*.rep"))
    d.down = False
    proc = start_agent(cfg_file)
    try:
        await until(d, lambda: len(series(d)) == 5 * len(METERS))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
    assert set(series(d).values()) == {3}

"""The collection scheduler: a cycle never overlaps the previous one; a failed cycle is
counted and does not stop the next."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from azfed.agent.app import Scheduler
from azfed.agent.collect.sample import Emit, Observation, whole_cycle
from azfed.agent.health import AgentMetrics
from azfed.agent.push.batcher import Batcher
from azfed.agent.push.spool import Spool
from azfed.config import CollectSection, parse_config


class Blocking:
    """A collector (our own Protocol) whose cycle lasts until the test releases it."""

    name = "blocking"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = asyncio.Event()  # set when a cycle is under way
        self.started = 0
        self.fail = False

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def checkpoint(self) -> dict[str, Any]:
        return {"started": self.started}

    def restore(self, state: dict[str, Any]) -> None: ...

    async def collect(self) -> Observation:
        return await whole_cycle(self.stream)

    async def stream(self, emit: Emit) -> None:
        self.started += 1
        self.entered.set()
        if self.fail:
            raise RuntimeError("cloud said no")
        await self.release.wait()
        await emit(Observation())


def scheduler(tmp_path: Path, collector: Blocking) -> Scheduler:
    cfg = parse_config({
        "push": {"url": "http://127.0.0.1:9/", "secret_file": str(tmp_path / "s")},
        "spool": {"path": str(tmp_path / "spool")},
    })  # fmt: skip
    assert cfg.push is not None
    assert cfg.spool is not None
    metrics = AgentMetrics()
    spool = Spool(cfg.spool, metrics)
    spool.open()
    batcher = Batcher(cfg.push, "t", spool, metrics)
    return Scheduler(collector, CollectSection(), batcher, metrics)


def count(s: Scheduler, outcome: str) -> float:
    value = s.metrics.registry.get_sample_value(
        "azfed_agent_cycles_total", {"collector": "blocking", "outcome": outcome}
    )
    return value or 0.0


async def test_a_tick_while_a_cycle_runs_is_skipped_and_counted(tmp_path: Path) -> None:
    col = Blocking()
    s = scheduler(tmp_path, col)
    async with asyncio.TaskGroup() as tg:
        s._tick(tg)
        await asyncio.wait_for(col.entered.wait(), 5)
        s._tick(tg)
        s._tick(tg)
        col.release.set()
    assert col.started == 1
    assert count(s, "skipped") == 2
    assert count(s, "ok") == 1
    assert s.checkpoint_path.exists()


async def test_a_failed_cycle_is_counted_and_the_next_tick_runs(tmp_path: Path) -> None:
    col = Blocking()
    col.fail = True
    s = scheduler(tmp_path, col)
    async with asyncio.TaskGroup() as tg:
        s._tick(tg)
    assert s.state.last_ok is False
    col.fail = False
    col.release.set()
    async with asyncio.TaskGroup() as tg:
        s._tick(tg)
    assert (count(s, "failed"), count(s, "ok"), s.state.last_ok) == (1, 1, True)

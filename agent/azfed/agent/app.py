"""The agent process: collectors -> batcher -> spool -> pusher, plus health and systemd.

Start order is sinks before sources (spool, pusher, batcher, health, then collectors); stop order
is the reverse, staged within `[agent] shutdown_deadline_s`: collectors stop (a cycle in flight
is cancelled: its data is re-read from the cloud next start), the batcher writes what it holds
to the spool, the pusher gets what is left of the deadline to drain the spool, and whatever is
still spooled then is sent after the next start. `run()` returns; the CLI owns the signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from azfed import systemd
from azfed.agent.collect import COLLECTORS
from azfed.agent.collect.sample import Collector, Observation
from azfed.agent.health import AgentMetrics, Readiness, bound_port, create_health_app, start_health
from azfed.agent.push.batcher import Batcher
from azfed.agent.push.pusher import Pusher
from azfed.agent.push.spool import Spool
from azfed.config import AzfedConfig, CollectSection, short_secret
from azfed.errors import ConfigError, Problem
from azfed.files import write_atomic
from azfed.heap import settle_heap

log = structlog.get_logger(__name__)


def load_collector(cfg: AzfedConfig, metrics: AgentMetrics) -> Collector:
    """The collector for `[agent] provider`, imported only when chosen."""
    assert cfg.agent is not None
    module, _, cls = COLLECTORS[cfg.agent.provider].partition(":")
    factory: Any = getattr(importlib.import_module(module), cls)
    collector: Collector = factory.from_config(cfg, metrics)
    return collector


@dataclass
class CycleState:
    """What /readyz needs to know about a collector's cycles."""

    last_ok: bool | None = None
    cycles: int = 0
    running: asyncio.Task[None] | None = field(default=None, repr=False)


class Scheduler:
    """Runs one collector on its interval plus jitter; a cycle never overlaps the previous."""

    def __init__(
        self, collector: Collector, cfg: CollectSection, batcher: Batcher, metrics: AgentMetrics
    ) -> None:
        self.collector = collector
        self.cfg = cfg
        self.batcher = batcher
        self.metrics = metrics
        self.state = CycleState()
        self.checkpoint_path = batcher.spool.dir / f"{collector.name}.checkpoint.json"

    def restore(self) -> None:
        """Give the collector its last checkpoint, if any (blocking: call in a thread)."""
        try:
            data = json.loads(self.checkpoint_path.read_bytes())
        except FileNotFoundError:
            return
        except ValueError as err:
            # written atomically, so only tampering gets here; re-reading is the safe side
            log.warning("checkpoint.discarded", why="unreadable: starting afresh",
                        path=str(self.checkpoint_path), reason=str(err))  # fmt: skip
            return
        self.collector.restore(data)

    def _save_checkpoint(self) -> None:
        data = json.dumps(self.collector.checkpoint(), separators=(",", ":")).encode()
        write_atomic(self.checkpoint_path, data)

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            while not stop.is_set():
                self._tick(tg)
                delay = self.cfg.interval_s + random.uniform(0, self.cfg.jitter_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
            if self.state.running is not None:
                self.state.running.cancel()

    def _tick(self, tg: asyncio.TaskGroup) -> None:
        name = self.collector.name
        if self.state.running is not None and not self.state.running.done():
            self.metrics.cycles.labels(name, "skipped").inc()
            log.warning("cycle.skipped", why="the previous cycle is still running", collector=name,
                        cycle=self.state.cycles)  # fmt: skip
            return
        self.state.cycles += 1
        self.state.running = tg.create_task(self._cycle(self.state.cycles))

    async def _cycle(self, cycle: int) -> None:
        name = self.collector.name
        started = time.perf_counter()
        structlog.contextvars.bind_contextvars(collector=name, cycle=cycle)
        instances = samples = 0  # counted as the parts go by: none is held here

        async def emit(part: Observation) -> None:
            nonlocal instances, samples
            instances += len(part.instances)
            samples += len(part.samples)
            await self.batcher.add(part)

        try:
            await self.collector.stream(emit)
            await self.batcher.flush()
            # only now that the findings are durable may the collector forget them
            await asyncio.to_thread(self._save_checkpoint)
        except Exception:
            # the plugin boundary: one bad cycle must not stop the agent; the next tick retries
            self.state.last_ok = False
            self.metrics.cycles.labels(name, "failed").inc()
            log.exception("cycle.failed")
            return
        elapsed = time.perf_counter() - started
        self.state.last_ok = True
        self.metrics.cycles.labels(name, "ok").inc()
        self.metrics.cycle_seconds.labels(name).observe(elapsed)
        log.info("cycle.finished", instances=instances, samples=samples,
                 seconds=round(elapsed, 3))  # fmt: skip


class Agent:
    """One agent process; `run(stop)` returns after a staged shutdown once `stop` is set."""

    def __init__(self, cfg: AzfedConfig, collector: Collector | None = None) -> None:
        cfg.require("agent", "push", "spool")
        assert cfg.agent is not None
        assert cfg.push is not None
        assert cfg.spool is not None
        self.cfg = cfg
        self.metrics = AgentMetrics()
        self.spool = Spool(cfg.spool, self.metrics)
        secret = cfg.push.secret_file.read_bytes().strip()
        if (why := short_secret(cfg.push.secret_file)) is not None:
            raise ConfigError(
                cfg.source, [Problem("[push] secret_file", str(cfg.push.secret_file), why)]
            )
        self.batcher = Batcher(cfg.push, cfg.agent.id, self.spool, self.metrics)
        self.pusher = Pusher(
            cfg.push,
            cfg.agent.id,
            secret,
            self.spool,
            metrics=self.metrics,
            wakeup=self.batcher.spooled,
        )
        self.collector = collector or load_collector(cfg, self.metrics)
        self.scheduler = Scheduler(self.collector, cfg.collect, self.batcher, self.metrics)
        self.health_port: int | None = None
        self.ready = asyncio.Event()  # set once every stage is running (tests wait on it)

    def readiness(self) -> Readiness:
        state = self.scheduler.state

        def cycle() -> tuple[bool, str]:
            return bool(state.last_ok), "no successful cycle yet" if state.last_ok is None else (
                "last collection cycle failed"
            )

        def spool() -> tuple[bool, str]:
            return not self.spool.full(), f"spool full ({self.spool.bytes} bytes)"

        def receiver() -> tuple[bool, str]:
            reach = self.pusher.reachable
            return reach is not False, "receiver unreachable or refusing our signature"

        return Readiness({"collection": cycle, "spool": spool, "receiver": receiver})

    async def run(self, stop: asyncio.Event) -> None:
        assert self.cfg.agent is not None
        await asyncio.to_thread(self.spool.open)
        await asyncio.to_thread(self.scheduler.restore)
        await self.collector.open()
        runner = await start_health(
            create_health_app(self.metrics, self.readiness()),
            self.cfg.health.host,
            self.cfg.health.port,
        )
        settle_heap()
        self.health_port = bound_port(runner)
        try:
            async with asyncio.TaskGroup() as tg:
                pusher = tg.create_task(self.pusher.run())
                batch_stop = asyncio.Event()
                batcher = tg.create_task(self.batcher.run(batch_stop))
                watchdog = tg.create_task(systemd.watchdog())
                scheduler = tg.create_task(self.scheduler.run(stop))
                systemd.notify("READY=1\nSTATUS=collecting")
                self.ready.set()
                log.info("agent.started", agent_id=self.cfg.agent.id,
                         provider=self.cfg.agent.provider,
                         health_port=self.health_port)  # fmt: skip
                await stop.wait()
                await self._shutdown(scheduler, batch_stop, batcher, pusher)
                watchdog.cancel()
        finally:
            await self.collector.close()
            await runner.cleanup()

    async def _shutdown(
        self,
        scheduler: asyncio.Task[None],
        batch_stop: asyncio.Event,
        batcher: asyncio.Task[None],
        pusher: asyncio.Task[None],
    ) -> None:
        assert self.cfg.agent is not None
        deadline = time.monotonic() + self.cfg.agent.shutdown_deadline_s
        systemd.notify("STOPPING=1\nSTATUS=draining")
        await scheduler  # sources first: it cancels a cycle in flight and returns
        batch_stop.set()
        await batcher  # its last flush puts everything it held in the spool
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                self.pusher.drained.clear()
                self.batcher.spooled.set()
                await self.pusher.drained.wait()
            log.info("shutdown.drained")
        except TimeoutError:
            log.warning("shutdown.deadline_reached", then="spooled until the next start",
                        reports=len(self.spool), bytes=self.spool.bytes)  # fmt: skip
        pusher.cancel()

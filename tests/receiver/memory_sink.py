"""A sink that keeps every batch in memory: what tests read to see what was written.

Test-only: the receiver takes it like any sink, through `create_app(config, sinks=[...])`."""

from __future__ import annotations

import asyncio

from azfed.receiver.sinks import Batch, SinkError


class MemorySink:
    """Keeps batches in order. `fail_next` makes the next write fail (a backend outage);
    `gate`, when set, holds every write until it is set (a slow backend)."""

    name = "memory"

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.fail_next = 0
        self.gate: asyncio.Event | None = None
        self.closed = False

    async def start(self) -> None:
        return None

    async def write(self, batch: Batch) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            self.fail_next -= 1
            raise SinkError("memory sink told to fail")
        self.batches.append(batch)

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        self.closed = True

    @property
    def samples(self) -> int:
        return sum(len(b.samples) for b in self.batches)

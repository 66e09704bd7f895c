"""Bounded fan-out for the receiver's writers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


async def bounded_each(fn: Callable[[T], Awaitable[None]], items: Sequence[T], limit: int) -> None:
    """Await `fn(item)` for every item, at most `limit` at once. The first failure cancels the
    rest and is raised as itself (not wrapped in a group), so callers catch what they expect."""
    it = iter(items)

    async def worker() -> None:
        for item in it:  # one shared iterator: each item is taken by exactly one worker
            await fn(item)

    tasks = [asyncio.ensure_future(worker()) for _ in range(min(limit, len(items)))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

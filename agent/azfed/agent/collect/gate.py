"""Admission to one cloud API: a request bucket and a cap on calls in flight.

AWS meters each API per account and region with a token bucket (a burst, then a steady
refill); exceeding it costs a `RequestLimitExceeded` and a backoff, which is slower than
waiting our turn. aiolimiter's leaky bucket with `max_rate=burst` over `burst / rate` seconds
is the same shape: `burst` calls at once, then `rate` calls a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiolimiter import AsyncLimiter


class ApiGate:
    """Rate-limit and bound the concurrency of calls to one API."""

    def __init__(self, name: str, *, rate_per_s: float, burst: int, concurrency: int) -> None:
        self.name = name
        self._limiter = AsyncLimiter(max_rate=burst, time_period=burst / rate_per_s)
        self._slots = asyncio.Semaphore(concurrency)

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Wait for a slot, then for a token; hold the slot until the call returns."""
        async with self._slots:
            await self._limiter.acquire()
            yield

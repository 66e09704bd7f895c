"""openstacksdk from asyncio: one Connection, made once, used from a bounded set of threads.

openstacksdk blocks, so every call runs in a worker thread. The public-OpenStack backend
(`azfed.clouds.openstack`), the agent's OpenStack collector and the receiver's Nova client all
go through `SdkConnection`: at most `concurrency` calls run at once, so a burst of requests
never becomes a burst of threads, and the Connection is built once, in a thread (building it
reads clouds.yaml and may authenticate), however many first calls arrive together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final, TypeVar

T = TypeVar("T")
# how long one API request to a public OpenStack may take, unless its settings say otherwise
API_TIMEOUT_S: Final = 30.0


class SdkConnection:
    """An openstacksdk Connection for asyncio callers.

    `connect` builds the Connection; it is called once, on first use, in a worker thread.
    `run(fn)` calls `fn(connection)` in a worker thread and returns its result or raises its
    error unchanged (callers map openstacksdk's errors onto their own). `close()` is called
    once, after every `run` has returned; a later `run` connects again.
    """

    def __init__(self, connect: Callable[[], Any], *, concurrency: int) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        self._connect = connect
        self._slots = asyncio.Semaphore(concurrency)
        self._connecting = asyncio.Lock()
        self._conn: Any = None

    async def connection(self) -> Any:
        """The Connection, built on the first call; concurrent first calls share one build."""
        if self._conn is None:
            async with self._connecting:
                if self._conn is None:  # another caller may have built it while we waited
                    async with self._slots:
                        self._conn = await asyncio.to_thread(self._connect)
        return self._conn

    async def run(self, fn: Callable[[Any], T]) -> T:
        """`fn(connection)` in a worker thread, once one of the `concurrency` slots is free."""
        conn = await self.connection()
        async with self._slots:
            return await asyncio.to_thread(fn, conn)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.to_thread(conn.close)


def connector(
    cloud: str | None,
    *,
    timeout_s: float,
    region: str | None = None,
    auth: dict[str, str] | None = None,
) -> Callable[[], Any]:
    """A Connection factory: a clouds.yaml entry by name (the OS_* variables when None), or
    explicit keyword arguments in `auth`. `timeout_s` bounds each API request."""

    def connect() -> Any:
        import openstack

        kwargs: dict[str, Any] = {"api_timeout": timeout_s, **(auth or {})}
        if cloud:
            kwargs["cloud"] = cloud
        if region:
            kwargs["region_name"] = region
        return openstack.connect(**kwargs)

    return connect

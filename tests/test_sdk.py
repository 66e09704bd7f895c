"""SdkConnection: openstacksdk off the event loop, connected once, never more than
`concurrency` calls in worker threads at a time."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from azfed.sdk import SdkConnection


class FakeConnection:
    """Stands for an openstacksdk Connection: records closes."""

    closed = 0

    def close(self) -> None:
        self.closed += 1


async def test_concurrent_first_calls_share_one_connect() -> None:
    """Ten calls arriving before any connection exists build exactly one."""
    made: list[FakeConnection] = []
    gate = threading.Event()

    def connect() -> FakeConnection:
        gate.wait(5)  # slow, like reading clouds.yaml and authenticating
        made.append(FakeConnection())
        return made[-1]

    sdk = SdkConnection(connect, concurrency=4)
    calls = [asyncio.create_task(sdk.run(lambda c: c)) for _ in range(10)]
    await asyncio.sleep(0)
    gate.set()
    seen = await asyncio.gather(*calls)
    assert len(made) == 1
    assert all(c is made[0] for c in seen)


async def test_no_more_than_concurrency_calls_run_at_once() -> None:
    running = peak = 0
    lock = threading.Lock()
    release = threading.Event()

    def call(_: Any) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        release.wait(5)
        with lock:
            running -= 1

    sdk = SdkConnection(FakeConnection, concurrency=3)
    calls = [asyncio.create_task(sdk.run(call)) for _ in range(12)]
    while True:  # until the first three are inside their threads
        with lock:
            if running == 3:
                break
        await asyncio.sleep(0.01)
    release.set()
    await asyncio.gather(*calls)
    assert peak == 3


async def test_errors_come_back_unchanged_and_close_closes_the_connection() -> None:
    sdk = SdkConnection(FakeConnection, concurrency=1)

    def fail(_: Any) -> None:
        raise LookupError("from the thread")

    with pytest.raises(LookupError, match="from the thread"):
        await sdk.run(fail)
    conn = await sdk.connection()
    await sdk.close()
    assert conn.closed == 1
    assert await sdk.connection() is not conn  # a later call connects again


def test_a_concurrency_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SdkConnection(FakeConnection, concurrency=0)

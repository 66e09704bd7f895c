"""Waiting in tests: for a condition, with a deadline, failing with what was awaited.

A fixed sleep followed by an assert is either slow or flaky; these wait exactly as long as the
condition takes, and when it never comes true the failure says what did not happen.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

Condition = Callable[[], bool | Awaitable[bool]]


async def until(
    condition: Condition,
    what: str,
    *,
    timeout: float = 30.0,
    wake: asyncio.Event | None = None,
    interval: float = 0.02,
) -> None:
    """Return once `condition()` is true. With `wake`, re-check each time that event is set
    (whoever sets it says something changed); without, re-check every `interval` seconds.
    Fails the test after `timeout` seconds, naming `what` was awaited."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if wake is not None:
            wake.clear()  # before looking, so a change made meanwhile still wakes us
        if await _check(condition):
            return
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError(f"waited {timeout:g}s for {what}; it did not happen")
        try:
            if wake is not None:
                await asyncio.wait_for(wake.wait(), left)
            else:
                await asyncio.sleep(min(interval, left))
        except TimeoutError:
            pass


async def _check(condition: Condition) -> bool:
    result = condition()
    if inspect.isawaitable(result):
        result = await result
    return bool(result)


def until_sync(
    condition: Callable[[], bool], what: str, *, timeout: float = 30.0, interval: float = 0.5
) -> None:
    """`until` for blocking code (openstacksdk, subprocesses): poll until true or fail."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout:g}s for {what}; it did not happen")
        time.sleep(interval)

"""azfed.systemd.watchdog, the one watchdog loop both the agent and the receiver run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from pathlib import Path

from azfed import systemd


async def test_the_watchdog_pets_systemd_at_half_the_interval_until_cancelled(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.setblocking(False)
        env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000", "WATCHDOG_PID": str(os.getpid())}
        dog = asyncio.create_task(systemd.watchdog(env))
        loop = asyncio.get_running_loop()
        got = [await asyncio.wait_for(loop.sock_recv(sock, 64), 5) for _ in range(3)]
        dog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await dog
    assert got == [b"WATCHDOG=1"] * 3


async def test_the_watchdog_returns_at_once_when_systemd_watches_another_process() -> None:
    env = {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"}
    await asyncio.wait_for(systemd.watchdog(env), 1)

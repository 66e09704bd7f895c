"""sd_notify over the NOTIFY_SOCKET datagram socket: READY, WATCHDOG, STOPPING, STATUS.

Twenty lines instead of a dependency: the protocol is one datagram of `KEY=value` lines.
Without NOTIFY_SOCKET (not started by systemd) every call does nothing.
"""

from __future__ import annotations

import asyncio
import os
import socket


def notify(state: str, env: dict[str, str] | None = None) -> bool:
    """Send `state` (e.g. "READY=1") to systemd; False if there is no one to tell."""
    addr = (env if env is not None else os.environ).get("NOTIFY_SOCKET", "")
    if not addr:
        return False
    if addr.startswith("@"):  # an abstract socket: a leading NUL byte, by convention '@'
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(addr)
        sock.sendall(state.encode())
    return True


def watchdog_interval(env: dict[str, str] | None = None) -> float | None:
    """Half of WATCHDOG_USEC in seconds (systemd's advice), if the watchdog is on for us."""
    e = env if env is not None else os.environ
    usec = e.get("WATCHDOG_USEC")
    pid = e.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


async def watchdog(env: dict[str, str] | None = None) -> None:
    """Pet systemd's watchdog until cancelled; return at once if the watchdog is off for us.

    Run it as a task on the process's event loop: a stuck loop stops the petting, and systemd
    restarts the service."""
    interval = watchdog_interval(env)
    if interval is None:
        return
    while True:
        notify("WATCHDOG=1", env)
        await asyncio.sleep(interval)

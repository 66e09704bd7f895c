"""A guest-mode agent (no cloud API) under a fake systemd: READY, WATCHDOG and STOPPING are
sent over NOTIFY_SOCKET, and the host's own usage reaches the receiver double."""

from __future__ import annotations

import asyncio
import socket
import uuid
from pathlib import Path

import pytest
from azfed.agent.app import Agent
from azfed.config import parse_config

from tests.agent.receiver_double import SECRET, Double, serve


async def test_guest_agent_notifies_systemd_and_reports_its_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sock_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(sock_path))
    listener.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock_path))
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    double = Double()
    runner, url = await serve(double)
    (tmp_path / "secret").write_bytes(SECRET)
    me = str(uuid.uuid4())
    agent = Agent(parse_config({
        "agent": {"id": "guest-1", "provider": "guest", "instance_uuid": me},
        "collect": {"interval_s": 1.0, "jitter_s": 0.0},
        "push": {"url": url, "secret_file": str(tmp_path / "secret")},
        "spool": {"path": str(tmp_path / "spool")},
        "health": {"port": 0},
    }))  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    loop = asyncio.get_running_loop()
    messages: list[str] = []

    async def until(word: str) -> None:
        while not any(word in m for m in messages):
            messages.append((await loop.sock_recv(listener, 4096)).decode())

    try:
        await asyncio.wait_for(until("READY=1"), 30)
        await asyncio.wait_for(until("WATCHDOG=1"), 30)
        while not any(s[1] == "cpu_util" for s in double.samples()):
            double.got.clear()
            await asyncio.wait_for(double.got.wait(), 30)
    finally:
        stop.set()
        await task
        await runner.cleanup()
    await asyncio.wait_for(until("STOPPING=1"), 5)
    listener.close()
    assert {s[0] for s in double.samples()} == {me}
    assert {"memory.usage", "network.incoming.bytes"} <= {s[1] for s in double.samples()}

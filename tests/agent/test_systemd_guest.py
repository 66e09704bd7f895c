"""A guest-mode agent (no cloud API) under a fake systemd: READY, WATCHDOG and STOPPING are
sent over NOTIFY_SOCKET, and the host's own usage reaches the real receiver."""

from __future__ import annotations

import asyncio
import socket
import uuid
from pathlib import Path

import pytest
from azfed.agent.app import Agent
from azfed.config import parse_config

from tests.agent.live_receiver import SECRET, LiveReceiver, serve_receiver


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
    (tmp_path / "secret").write_bytes(SECRET)
    me = str(uuid.uuid4())
    async with serve_receiver(tmp_path, {"guest-1": SECRET}) as receiver:
        await run_guest(tmp_path, receiver, listener, me)
    listener.close()


async def run_guest(
    tmp_path: Path, receiver: LiveReceiver, listener: socket.socket, me: str
) -> None:
    url = receiver.url
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

    async def notified(word: str) -> None:
        while not any(word in m for m in messages):
            messages.append((await loop.sock_recv(listener, 4096)).decode())

    try:
        await asyncio.wait_for(notified("READY=1"), 30)
        await asyncio.wait_for(notified("WATCHDOG=1"), 30)
        await receiver.faults.until(
            lambda: any(s[1] == "cpu" for s in receiver.samples()), "a cpu sample"
        )
    finally:
        stop.set()
        await task
    await asyncio.wait_for(notified("STOPPING=1"), 5)
    # the instance's own meters on its UUID; its vNICs' and disks' on <uuid>-<device>
    assert {s[0] for s in receiver.samples() if s[1] == "cpu"} == {me}
    assert all(s[0].startswith(me) for s in receiver.samples())
    assert {"memory.usage", "network.incoming.bytes"} <= {s[1] for s in receiver.samples()}
    instance = await receiver.store.instance(me)
    assert instance is not None
    assert (instance["provider"], instance["state"]) == ("guest", "running")

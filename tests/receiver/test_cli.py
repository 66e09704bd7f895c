"""`azfed receiver run` as systemd runs it: READY=1 on the notify socket, reports accepted,
SIGTERM stops it cleanly; `azfed status` then reads what it stored."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from azfed import wire

from testbed.procs import free_port
from tests.receiver.conftest import AGENT, SECRET, example, restamp


def _write_config(tmp_path: Path, port: int) -> Path:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / f"agents_{AGENT}").write_bytes(SECRET)
    cfg = tmp_path / "receiver.toml"
    cfg.write_text(
        f"""
[receiver]
host = "127.0.0.1"
port = {port}
secrets_dir = "{secrets}"
database_url = "sqlite:///{tmp_path / "state.db"}"
sinks = ["null"]
"""
    )
    return cfg


def _azfed(*args: str, **kw: object) -> list[str]:
    return [sys.executable, "-m", "azfed.cli", *args]


def serve_one_report(cfg: Path, port: int, tmp_path: Path) -> dict[str, Any]:
    """Run `azfed receiver run --config CFG` (listening on PORT) as systemd would: it must say
    READY=1, accept a signed report, say STOPPING=1 on SIGTERM and exit 0. Returns what
    `azfed status --json` then reads from the receiver's database."""
    notify_path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(notify_path)
        notify.settimeout(60)
        env = {**os.environ, "NOTIFY_SOCKET": notify_path, "AZFED_LOG_FORMAT": "json"}
        proc = subprocess.Popen(
            _azfed("receiver", "run", "--config", str(cfg)),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            assert "READY=1" in notify.recv(4096).decode()
            now = time.time()
            report = restamp(example(), now)
            body, headers = wire.encode_report(
                report, secret=SECRET, agent_id=AGENT, seq=42, now=now, gzip=True
            )
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}{wire.REPORTS_PATH}", data=body, headers=headers
            )
            with urllib.request.urlopen(req, timeout=30) as resp:
                assert json.load(resp)["samples"] == len(report["samples"])
            proc.send_signal(signal.SIGTERM)
            assert "STOPPING=1" in notify.recv(4096).decode()
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err.decode()[-2000:]
    out = subprocess.run(
        _azfed("status", "--config", str(cfg), "--json"), capture_output=True, check=True
    )
    status: dict[str, Any] = json.loads(out.stdout)
    return status


def test_receiver_run_notifies_systemd_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    """The service says READY=1, accepts a signed report, and exits 0 on SIGTERM after
    STOPPING=1; `azfed status --json` then shows the agent and its instances."""
    port = free_port()
    status = serve_one_report(_write_config(tmp_path, port), port, tmp_path)
    assert [(a["agent_id"], a["last_seq"]) for a in status["agents"]] == [(AGENT, 42)]
    assert status["instances"] == {"running": 1, "stopped": 1}
    assert status["orphans"] == []


def test_the_shipped_sample_config_is_valid_and_sets_every_receiver_key() -> None:
    """packaging/examples/receiver.toml passes `azfed config check` and explains every
    [receiver] key the code knows (a new key must be added to the sample)."""
    from azfed.config import ReceiverSection, load_config

    sample = Path(__file__).resolve().parents[2] / "packaging" / "examples" / "receiver.toml"
    cfg = load_config(sample)
    assert cfg.receiver is not None
    text = sample.read_text()
    missing = [k for k in ReceiverSection.model_fields if f"{k} =" not in text]
    assert missing == []

"""Log settings of `azfed agent run` and `azfed receiver run`: flag > environment > the file's
[logging] table > default, each step shown for both processes.

The processes' real start-up runs (config load, `Agent(cfg)`, the CLI's logging set-up); only
the long-running part is replaced by a probe that logs one line per level and returns, so the
test reads what the operator would see on stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from azfed.agent.app import Agent
from azfed.cli import main
from click.testing import CliRunner

LEVELS = ["debug", "info", "warning", "error"]


def _probe_lines() -> None:
    log = structlog.get_logger("azfed.probe")
    for level in LEVELS:
        getattr(log, level)(f"probe.{level}")


async def _agent_probe(self: Agent, stop: asyncio.Event) -> None:
    _probe_lines()


async def _receiver_probe(config: Any, stop: asyncio.Event) -> None:
    _probe_lines()


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI configures process-wide logging; put it back for the tests that follow."""
    monkeypatch.delenv("AZFED_LOG_LEVEL", raising=False)
    monkeypatch.delenv("AZFED_LOG_FORMAT", raising=False)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    saved = structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**saved)


def _config(tmp_path: Path, process: str, logging_table: dict[str, str]) -> Path:
    lines = []
    if process == "agent":
        (tmp_path / "secret").write_text("s3cret-0123456789abcdefghijklmnopq")
        lines += [
            "[agent]",
            'id = "probe"',
            'provider = "guest"',
            f'instance_uuid = "{uuid.uuid4()}"',
            "[push]",
            'url = "http://127.0.0.1:9"',
            f'secret_file = "{tmp_path / "secret"}"',
            "[spool]",
            f'path = "{tmp_path / "spool"}"',
        ]
    else:
        lines += ["[receiver]", f'secrets_dir = "{tmp_path}"', 'sinks = ["null"]']
    if logging_table:
        lines.append("[logging]")
        lines += [f'{k} = "{v}"' for k, v in logging_table.items()]
    path = tmp_path / f"{process}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    process: str,
    flags: list[str],
    env: dict[str, str],
    file: dict[str, str],
) -> str:
    monkeypatch.setattr(Agent, "run", _agent_probe)
    monkeypatch.setattr("azfed.receiver.run.serve", _receiver_probe)
    config = _config(tmp_path, process, file)
    result = CliRunner(env=env).invoke(main, [*flags, process, "run", "--config", str(config)])
    assert result.exit_code == 0, result.output
    return result.stderr


def _events(stderr: str) -> list[str]:
    return [e for e in (f"probe.{lv}" for lv in LEVELS) if e in stderr]


def _is_json(stderr: str) -> bool:
    lines = [ln for ln in stderr.splitlines() if "probe." in ln]
    assert lines, stderr
    try:
        return all(isinstance(json.loads(ln), dict) for ln in lines)
    except ValueError:
        return False


PROCESSES = ["agent", "receiver"]

# (flags, environment, the file's [logging], the level that must take effect)
LEVEL_STEPS = {
    "default is info": ([], {}, {}, "info"),
    "file over default": ([], {}, {"level": "warning"}, "warning"),
    "environment over file": ([], {"AZFED_LOG_LEVEL": "debug"}, {"level": "error"}, "debug"),
    "flag over environment": (
        ["--log-level", "error"],
        {"AZFED_LOG_LEVEL": "debug"},
        {"level": "debug"},
        "error",
    ),
}


@pytest.mark.parametrize("process", PROCESSES)
@pytest.mark.parametrize("step", LEVEL_STEPS, ids=list(LEVEL_STEPS))
def test_the_log_level_comes_from_flag_then_environment_then_file_then_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, process: str, step: str
) -> None:
    flags, env, file, level = LEVEL_STEPS[step]
    stderr = _run(monkeypatch, tmp_path, process, flags, env, file)
    assert _events(stderr) == [f"probe.{lv}" for lv in LEVELS[LEVELS.index(level) :]]


# the runner's stderr is not a TTY, so "auto" (the default) renders JSON
FORMAT_STEPS = {
    "default is auto (json off a tty)": ([], {}, {}, True),
    "file over default": ([], {}, {"format": "console"}, False),
    "environment over file": ([], {"AZFED_LOG_FORMAT": "json"}, {"format": "console"}, True),
    "flag over environment": (
        ["--log-format", "console"],
        {"AZFED_LOG_FORMAT": "json"},
        {"format": "json"},
        False,
    ),
}


@pytest.mark.parametrize("process", PROCESSES)
@pytest.mark.parametrize("step", FORMAT_STEPS, ids=list(FORMAT_STEPS))
def test_the_log_format_comes_from_flag_then_environment_then_file_then_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, process: str, step: str
) -> None:
    flags, env, file, as_json = FORMAT_STEPS[step]
    stderr = _run(monkeypatch, tmp_path, process, flags, env, file)
    assert _is_json(stderr) is as_json

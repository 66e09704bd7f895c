"""`azfed config check` finds every error a process would otherwise only meet at start.

Each case below used to pass `config check` and then stop (or silently not do its job) in a
constructor: `Agent.__init__` (`require`), a collector's `from_config`, the Gnocchi sink's
`from_config`, the receiver's cleaner. Each must now fail the check with exit 3, naming the key.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from azfed.cli import main
from click.testing import CliRunner

AGENT = """
[agent]
id = "a1"
provider = "ec2"
[aws]
region = "us-east-1"
[push]
url = "https://controller.example:8790"
secret_file = "/etc/azfed/push-secret"
[spool]
path = "/var/lib/azfed-agent/spool"
"""
RECEIVER = """
[receiver]
secrets_dir = "/etc/azfed/agents"
sinks = ["gnocchi", "nova"]
[gnocchi]
endpoint = "http://10.0.0.11:8041"
[nova]
public_azs = ["aws-az"]
[reconcile]
action = "clean"
[aws]
region = "us-east-1"
"""


def _drop(text: str, table: str) -> str:
    """`text` without `[table]` and its keys."""
    out, skipping = [], False
    for line in text.splitlines():
        if line.startswith("["):
            skipping = line == f"[{table}]"
        if not skipping:
            out.append(line)
    return "\n".join(out) + "\n"


def _set(text: str, table: str, key: str, value: str | None) -> str:
    """`text` with `key` (unique in these files) set under `[table]`, or removed when None."""
    lines = [ln for ln in text.splitlines() if not ln.startswith(f"{key} = ")]
    if value is not None:
        lines.insert(lines.index(f"[{table}]") + 1, f"{key} = {value}")
    return "\n".join(lines) + "\n"


# (file, the key the check must name) - the constructor that raised, or misbehaved, in the id
CASES: dict[str, tuple[str, str]] = {
    "Agent.__init__ requires [push]": (_drop(AGENT, "push"), "[push]"),
    "Agent.__init__ requires [spool]": (_drop(AGENT, "spool"), "[spool]"),
    "Ec2Collector.from_config requires [aws]": (_drop(AGENT, "aws"), "[aws]"),
    "OpenStackCollector.from_config requires [openstack]": (
        _set(AGENT, "agent", "provider", '"openstack"'),
        "[openstack]",
    ),
    "GuestCollector.from_config requires instance_uuid": (
        _set(AGENT, "agent", "provider", '"guest"'),
        "[agent] instance_uuid",
    ),
    "the gnocchi sink requires [gnocchi] endpoint": (
        _set(RECEIVER, "gnocchi", "endpoint", None),
        "[gnocchi] endpoint",
    ),
    "cleaning requires [aws] (the cleaner was silently absent)": (
        _drop(RECEIVER, "aws"),
        "[aws]",
    ),
    "cleaning requires [nova] public_azs (reconcile never ran)": (
        _set(RECEIVER, "nova", "public_azs", None),
        "[nova] public_azs",
    ),
}


def _check(tmp_path: Path, text: str, *flags: str) -> Any:
    path = tmp_path / "azfed.toml"
    path.write_text(text)
    return CliRunner().invoke(main, ["config", "check", *flags, str(path)])


@pytest.mark.parametrize("text", [AGENT, RECEIVER], ids=["agent", "receiver"])
def test_the_complete_files_the_cases_start_from_pass(tmp_path: Path, text: str) -> None:
    result = _check(tmp_path, text)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_config_check_fails_with_exit_3_naming_the_key(tmp_path: Path, case: str) -> None:
    text, key = CASES[case]
    result = _check(tmp_path, text, "--json")
    assert result.exit_code == 3, result.output
    doc = json.loads(result.stdout)
    assert key in [p["key"] for p in doc["problems"]], doc
    reason = next(p["reason"] for p in doc["problems"] if p["key"] == key)
    # it says what to do, not only what is wrong
    assert any(word in reason for word in ("add", "set", "drop")), reason


def test_an_unreadable_spool_state_stops_the_agent_with_what_to_do(tmp_path: Path) -> None:
    """Not a config error but one the operator causes and fixes: a message, not a traceback."""
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "state.json").write_text("{not json")
    (tmp_path / "secret").write_text("s3cret-0123456789abcdefghijklmnopq")
    path = tmp_path / "agent.toml"
    path.write_text(
        f'[agent]\nid = "a1"\nprovider = "guest"\ninstance_uuid = "{uuid.uuid4()}"\n'
        f'[push]\nurl = "http://127.0.0.1:9"\nsecret_file = "{tmp_path / "secret"}"\n'
        f'[spool]\npath = "{spool}"\n[health]\nport = 0\n'
    )
    result = CliRunner().invoke(main, ["agent", "run", "--config", str(path)])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "state.json is unreadable" in result.stderr
    assert "restore it or set next_seq" in result.stderr

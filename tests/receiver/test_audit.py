"""`azfed audit` reads back the decisions the receiver records (cleaned / clean_failed).

Sync tests: the command runs its own event loop, as it does for an operator."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from azfed.cli import main
from azfed.receiver.store import Store
from click.testing import CliRunner

from tests.receiver.conftest import make_config

UUID_A = "6c3b7a2e-0c1d-4f0e-9d4b-1a2b3c4d5e6f"
UUID_B = "0f9e8d7c-6b5a-4c3d-8e2f-1a0b9c8d7e6f"
T0 = 1_700_000_000.0


def _config_file(tmp_path: Path) -> Path:
    cfg = make_config(tmp_path)
    assert cfg.receiver is not None
    path = tmp_path / "receiver.toml"
    path.write_text(
        f'[receiver]\nsecrets_dir = "{cfg.receiver.secrets_dir}"\n'
        f'database_url = "{cfg.receiver.database_url}"\nsinks = ["null"]\n'
    )
    return path


async def _record_two_decisions(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    assert cfg.receiver is not None
    store = Store(cfg.receiver.database_url)
    await store.open()
    orphan = {"kind": "public_without_nova", "provider": "ec2", "reason": "unknown to Nova"}
    await store.record("cleaned", UUID_A, {**orphan, "remote_id": "i-0a"}, T0)
    detail = {**orphan, "remote_id": "i-0b", "error": "PermanentError('UnauthorizedOperation')"}
    await store.record("clean_failed", UUID_B, detail, T0 + 60)
    await store.close()


def test_audit_lists_the_recorded_decisions_newest_first_as_json(tmp_path: Path) -> None:
    asyncio.run(_record_two_decisions(tmp_path))
    result = CliRunner().invoke(main, ["audit", "--config", str(_config_file(tmp_path)), "--json"])
    assert result.exit_code == 0, result.output
    entries = json.loads(result.output)
    assert [(e["kind"], e["subject"], e["at"]) for e in entries] == [
        ("clean_failed", UUID_B, "2023-11-14T22:14:20+00:00"),
        ("cleaned", UUID_A, "2023-11-14T22:13:20+00:00"),
    ]
    assert entries[0]["detail"]["error"] == "PermanentError('UnauthorizedOperation')"


def test_audit_as_text_says_why_a_clean_failed_and_honours_the_limit(
    tmp_path: Path,
) -> None:
    asyncio.run(_record_two_decisions(tmp_path))
    args = ["audit", "--config", str(_config_file(tmp_path)), "--limit", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["at", "decision", "instance", "detail"]
    assert len(lines) == 3  # header, rule, the newest entry only
    assert "clean_failed" in lines[2]
    assert "ec2 i-0b: PermanentError('UnauthorizedOperation')" in lines[2]


def test_audit_of_a_fresh_store_says_nothing_was_recorded(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["audit", "--config", str(_config_file(tmp_path))])
    assert (result.exit_code, result.output) == (0, "no decisions recorded\n")

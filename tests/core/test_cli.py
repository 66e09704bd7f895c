"""The `azfed` command: version, every subcommand group the design names, and config check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from azfed import __version__
from azfed.cli import main
from click.testing import CliRunner


def test_version_is_printed() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


@pytest.mark.parametrize(
    "path",
    [
        ["agent", "run"],
        ["receiver", "run"],
        ["policy", "check"],
        ["policy", "explain"],
        ["policy", "simulate"],
        ["config", "check"],
        ["cloud-init", "render"],
        ["quota"],
        ["status"],
    ],
)
def test_every_subcommand_the_design_names_exists(path: list[str]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_config_check_names_the_bad_key_and_exits_non_zero(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[aws]\nregion = "us-east-1"\nread_timeout_s = -3\n')
    result = CliRunner().invoke(main, ["config", "check", str(bad)])
    assert result.exit_code == 3
    assert "[aws] read_timeout_s = -3" in result.output


def test_config_check_json_lists_problems_for_tools(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[health]\nport = "http"\n')
    result = CliRunner().invoke(main, ["config", "check", "--json", str(bad)])
    doc = json.loads(result.output)
    assert result.exit_code == 3
    assert doc["valid"] is False
    assert doc["problems"][0]["key"] == "[health] port"
    assert doc["problems"][0]["value"] == "http"


def test_config_check_accepts_a_good_file(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[aws]\nregion = "us-east-1"\n')
    result = CliRunner().invoke(main, ["config", "check", str(good)])
    assert result.exit_code == 0
    assert "valid" in result.output


def test_the_installed_console_script_runs() -> None:
    """The `azfed` entry point the package installs, not only the click object."""
    exe = Path(sys.executable).parent / "azfed"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"azfed, version {__version__}"

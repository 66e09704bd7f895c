"""`azfed cloud-init render`: valid cloud-config, no secret, and clear refusals of bad settings."""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from azfed.bootstrap import render_file
from azfed.cli import EXIT_INVALID, main
from azfed.errors import ConfigError
from click.testing import CliRunner

from tests.packaging.conftest import ROOT, WriteSettings, cloud_init_schema

COMBINATIONS = [
    ("ec2", "wheel"),
    ("ec2", "index"),
    ("ec2", "baked"),
    ("openstack", "baked"),
    ("openstack", "wheel"),
]


def files_of(user_data: str) -> dict[str, str]:
    doc = yaml.safe_load(user_data)
    return {f["path"]: f["content"] for f in doc["write_files"]}


def known_cloud_config_keys() -> set[str]:
    """Every top-level key some cloud-init module reads, from the installed package's schema."""
    code = (
        "import json; from cloudinit.config.schema import get_schema; s = get_schema(); "
        "keys = {k for d in s['$defs'].values() for k in d.get('properties', {})}; "
        "print(json.dumps(sorted(keys)))"
    )
    # the system interpreter: cloud-init is a Debian package, not in the project venv
    out = subprocess.run(
        ["/usr/bin/python3", "-c", code], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout))


@pytest.mark.parametrize(("target", "install"), COMBINATIONS)
def test_rendered_user_data_passes_cloud_inits_schema_validator(
    write_settings: WriteSettings, tmp_path: Path, target: str, install: str
) -> None:
    user_data = render_file(write_settings(target, install))
    result = cloud_init_schema(user_data, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout
    unknown = set(yaml.safe_load(user_data)) - known_cloud_config_keys()
    assert not unknown, f"keys no cloud-init module reads (the schema lets them pass): {unknown}"


def test_cloud_inits_validator_rejects_a_malformed_document(tmp_path: Path) -> None:
    """The validator the test above relies on does fail on a bad document."""
    result = cloud_init_schema("#cloud-config\nruncmd: not-a-list\n", tmp_path)
    assert result.returncode != 0
    assert "runcmd" in result.stdout + result.stderr


@pytest.mark.parametrize(("target", "install"), COMBINATIONS)
def test_boot_script_is_valid_posix_shell(
    write_settings: WriteSettings, target: str, install: str
) -> None:
    script = files_of(render_file(write_settings(target, install)))[
        "/usr/local/sbin/azfed-bootstrap"
    ]
    result = subprocess.run(["sh", "-n"], input=script, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert script.startswith("#!/bin/sh\n")
    assert "set -eu" in script


@pytest.mark.parametrize(("target", "install"), COMBINATIONS)
def test_boot_script_passes_shellcheck(
    write_settings: WriteSettings, tmp_path: Path, target: str, install: str
) -> None:
    exe = shutil.which("shellcheck")
    assert exe, "shellcheck is not installed: run `make setup` (Debian package shellcheck)"
    script = tmp_path / "azfed-bootstrap"
    files = files_of(render_file(write_settings(target, install)))
    script.write_text(files["/usr/local/sbin/azfed-bootstrap"])
    result = subprocess.run(
        [exe, "-s", "sh", str(script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_a_setting_reaches_the_boot_script_as_one_shell_word(
    write_settings: WriteSettings, tmp_path: Path
) -> None:
    """Shell syntax inside a value stays data: the script runs pip with it as one argument."""
    hostile = "https://pypi.example.org/simple?a=$(touch%20pwned)&b=`id`;c=$HOME"
    settings = write_settings("ec2", "index")
    text = settings.read_text().replace(
        'index_url = "https://pypi.org/simple"', f'index_url = "{hostile}"'
    )
    settings.write_text(text)
    script = files_of(render_file(settings))["/usr/local/sbin/azfed-bootstrap"]
    # run the install step alone with a stand-in pip that prints the arguments it was given
    start = script.index('"$prefix/bin/pip"')
    step = script[start : script.index("\n", script.index("--index-url", start))]
    bindir = tmp_path / "prefix" / "bin"
    bindir.mkdir(parents=True)
    (bindir / "pip").write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    (bindir / "pip").chmod(0o755)
    result = subprocess.run(
        ["sh", "-c", f"prefix={tmp_path / 'prefix'}\n{step}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    args = result.stdout.splitlines()
    assert args[args.index("--index-url") + 1] == hostile
    assert not (tmp_path / "pwned").exists()


def test_agent_config_and_unit_reach_the_instance_byte_for_byte(
    write_settings: WriteSettings, tmp_path: Path
) -> None:
    files = files_of(render_file(write_settings("ec2", "wheel")))
    assert files["/etc/azfed/agent.toml"] == (tmp_path / "agent.toml").read_text()
    unit = (ROOT / "packaging/systemd/azfed-agent.service").read_text()
    assert files["/etc/systemd/system/azfed-agent.service"] == unit


def test_openstack_variant_installs_the_clouds_yaml_drop_in_and_does_not_start_without_secrets(
    write_settings: WriteSettings,
) -> None:
    files = files_of(render_file(write_settings("openstack", "baked")))
    dropin = (ROOT / "packaging/systemd/azfed-agent-openstack.conf").read_text()
    assert files["/etc/systemd/system/azfed-agent.service.d/openstack.conf"] == dropin
    script = files["/usr/local/sbin/azfed-bootstrap"]
    assert "enable --now" not in script
    assert "fetch-secret" not in script
    assert "[ -s /etc/azfed/push-secret ] && [ -s /etc/azfed/clouds.yaml ]" in script


def test_ec2_boot_script_fetches_the_secret_from_ssm_and_checks_the_wheel_hash(
    write_settings: WriteSettings,
) -> None:
    script = files_of(render_file(write_settings("ec2", "wheel")))[
        "/usr/local/sbin/azfed-bootstrap"
    ]
    fetch = script.index("cloud-init fetch-secret --parameter /azfed/agent/push-secret")
    assert "--region eu-west-1 --out /etc/azfed/push-secret" in script
    # the service starts only after the secret is there, and the wheel is checked before pip
    assert script.index("systemctl enable --now azfed-agent.service") > fetch
    assert script.index("sha256sum -c -") < script.index('bin/pip" install')


def test_user_data_contains_no_secret(write_settings: WriteSettings, tmp_path: Path) -> None:
    """The operator's local copy of the secret (the one put into SSM) never reaches user data."""
    secret = "s3cr3t-Push-Key-0f9e8d7c6b5a"
    (tmp_path / "push-secret").write_text(secret)
    user_data = render_file(write_settings("ec2", "wheel"))
    assert secret not in user_data
    assert not re.search(r"(AKIA|ASIA)[A-Z0-9]{16}", user_data), "an AWS access key id"
    assert "PRIVATE KEY" not in user_data
    assert "aws_secret_access_key" not in user_data.lower()


def test_agent_config_holding_the_secret_inline_is_refused(write_settings: WriteSettings) -> None:
    agent_toml = (
        '[agent]\nid = "a"\n[aws]\nregion = "eu-west-1"\n'
        '[push]\nurl = "https://r.example.org/v1/reports"\n'
        'secret_file = "/run/credentials/azfed-agent.service/push-secret"\nsecret = "hunter2"\n'
        '[spool]\npath = "/var/lib/azfed-agent/spool"\n'
    )
    with pytest.raises(ConfigError) as err:
        render_file(write_settings("ec2", "wheel", agent_toml=agent_toml))
    assert "[push] secret = 'hunter2': unknown key" in str(err.value)


BAD_SETTINGS = [
    # (what the operator wrote, the key the error must name, a piece of the value or reason)
    ('install = "pip"\n', "[bootstrap] install", "'pip'"),
    ('wheel_url = "http://x.example.org/azfed-0.1.0-py3-none-any.whl"\n', "wheel_url", "http"),
    ('wheel_url = "https://x.example.org/latest.tar.gz"\n', "wheel_url", "latest.tar.gz"),
    ('wheel_sha256 = "deadbeef"\n', "[bootstrap] wheel_sha256", "'deadbeef'"),
    ('secret_parameter = "azfed/no-leading-slash"\n', "secret_parameter", "no-leading-slash"),
    ('packages = ["python3; reboot"]\n', "[bootstrap] packages.0", "python3; reboot"),
    ('version = "1.0 --index-url=https://evil"\n', "[bootstrap] version", "evil"),
    ('secret = "hunter2"\n', "[bootstrap] secret", "unknown key"),
]


@pytest.mark.parametrize(("line", "key", "detail"), BAD_SETTINGS)
def test_bad_setting_is_refused_naming_its_key_and_value(
    write_settings: WriteSettings, tmp_path: Path, line: str, key: str, detail: str
) -> None:
    path = write_settings("ec2", "wheel")
    text = path.read_text()
    name = line.split(" = ", maxsplit=1)[0]
    # replace the line if the base settings have it, so the bad value is the only one
    kept = [ln for ln in text.splitlines(keepends=True) if not ln.startswith(name + " = ")]
    path.write_text("".join(kept) + line)
    with pytest.raises(ConfigError) as err:
        render_file(path)
    message = str(err.value)
    assert key in message
    assert detail in message
    assert str(path) in message


MISSING = [
    ("target", "ec2", "[bootstrap] target"),
    ("secret_parameter", "ec2", "[bootstrap] secret_parameter"),
    ("wheel_url", "ec2", "[bootstrap] wheel_url"),
    ("wheel_sha256", "ec2", "[bootstrap] wheel_sha256"),
    ("agent_config", "ec2", "[bootstrap] agent_config"),
]


@pytest.mark.parametrize(("name", "target", "key"), MISSING)
def test_missing_setting_is_refused_naming_it(
    write_settings: WriteSettings, name: str, target: str, key: str
) -> None:
    path = write_settings(target, "wheel")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(ln for ln in lines if not ln.startswith(name + " = ")))
    with pytest.raises(ConfigError) as err:
        render_file(path)
    assert f"{key} = None:" in str(err.value)


AGENT_CONFIG_MISFITS = [
    ('path = "/var/lib/azfed-agent/spool"', 'path = "/tmp/spool"', "[spool] path", "/tmp/spool"),
    (
        'secret_file = "/run/credentials/azfed-agent.service/push-secret"',
        'secret_file = "/etc/azfed/push-secret"',
        "[push] secret_file",
        "LoadCredential",
    ),
    (
        'provider = "ec2"',
        'provider = "guest"\ninstance_uuid = "0b7e6f4c-7d3a-4f7e-9a51-2f0c8d1e4b6a"',
        "[agent] provider",
        "'guest'",
    ),
    ('[aws]\nregion = "eu-west-1"\n', "", "[aws] = None", 'required with [agent] provider = "ec2"'),
]


@pytest.mark.parametrize(("old", "new", "key", "detail"), AGENT_CONFIG_MISFITS)
def test_agent_config_that_does_not_fit_the_unit_is_refused_naming_the_key(
    write_settings: WriteSettings, tmp_path: Path, old: str, new: str, key: str, detail: str
) -> None:
    from tests.packaging.conftest import AGENT_TOML

    assert old in AGENT_TOML["ec2"]
    with pytest.raises(ConfigError) as err:
        render_file(write_settings("ec2", "wheel", agent_toml=AGENT_TOML["ec2"].replace(old, new)))
    assert key in str(err.value)
    assert detail in str(err.value)
    assert str(tmp_path / "agent.toml") in str(err.value)


def test_openstack_target_refuses_an_ssm_parameter(write_settings: WriteSettings) -> None:
    path = write_settings("openstack", "baked", extra='secret_parameter = "/azfed/x"\n')
    with pytest.raises(ConfigError, match=r"\[bootstrap\] secret_parameter = '/azfed/x'"):
        render_file(path)


def test_cli_writes_user_data_readable_only_by_its_owner(
    write_settings: WriteSettings, tmp_path: Path
) -> None:
    settings = write_settings("ec2", "wheel")
    out = tmp_path / "user-data"
    out.write_text("an older render, once world-readable")
    out.chmod(0o644)
    result = CliRunner().invoke(
        main, ["cloud-init", "render", "--settings", str(settings), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.read_text() == render_file(settings)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_cli_refuses_a_bad_setting_with_exit_3_and_names_it(write_settings: WriteSettings) -> None:
    settings = write_settings("ec2", "wheel", extra='install_mode = "x"\n')
    result = CliRunner().invoke(main, ["cloud-init", "render", "--settings", str(settings)])
    assert result.exit_code == EXIT_INVALID
    assert "[bootstrap] install_mode = 'x': unknown key" in result.output

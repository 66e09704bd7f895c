"""Config files are validated at load into frozen objects; errors name key, value and reason."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
from azfed.config import AzfedConfig, load_config, parse_config
from azfed.errors import ConfigError

GOOD = """
[agent]
id = "vpc-east-1"

[aws]
region = "us-east-1"

[push]
url = "https://controller.example:8790/v1/reports"
secret_file = "/etc/azfed/agent.secret"

[spool]
path = "/var/lib/azfed-agent/spool"
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "azfed.toml"
    p.write_text(text)
    return p


def test_a_valid_file_loads_into_typed_values(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, GOOD))
    assert cfg.agent is not None
    assert cfg.agent.id == "vpc-east-1"
    assert cfg.push is not None
    assert cfg.push.secret_file == Path("/etc/azfed/agent.secret")
    assert cfg.collect.interval_s == 60.0  # defaults fill tables the file leaves out


def test_loaded_config_is_frozen(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, GOOD))
    assert cfg.agent is not None
    with pytest.raises(pydantic.ValidationError):
        cfg.agent.id = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("snippet", "key", "value"),
    [
        ('[aws]\nregion = "us-east-1"\nread_timeout_s = -3\n', "[aws] read_timeout_s", -3),
        ('[aws]\nregion = "Mars"\n', "[aws] region", "Mars"),
        ('[aws]\nregion = "us-east-1"\ncolour = "blue"\n', "[aws] colour", "blue"),
        ('[collect]\ninterval_s = "60"\n', "[collect] interval_s", "60"),
        ("[collect]\nmetrics_period_s = 90\n", "[collect] metrics_period_s", 90),
        ('[agent]\nid = "has space"\n', "[agent] id", "has space"),
        ("[agent]\n", "[agent] id", None),
        ('[logging]\nlevel = "loud"\n', "[logging] level", "loud"),
        ("[mystery]\nx = 1\n", "[mystery]", {"x": 1}),
    ],
)
def test_each_bad_value_is_named_with_its_key_and_value(
    tmp_path: Path, snippet: str, key: str, value: object
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, snippet))
    found = {(p.key, repr(p.value)) for p in caught.value.problems}
    assert (key, repr(value)) in found
    assert key in str(caught.value)


def test_every_problem_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    text = '[aws]\nregion = "nowhere"\nmax_attempts = 0\n[health]\nport = 70000\n'
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text))
    assert {p.key for p in caught.value.problems} == {
        "[aws] region",
        "[aws] max_attempts",
        "[health] port",
    }


def test_a_file_that_is_not_toml_is_refused_with_the_parser_position(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not valid TOML: .*line 1"):
        load_config(_write(tmp_path, "[agent\nid = 1\n"))


def test_a_missing_file_is_refused_with_the_os_reason(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load_config(tmp_path / "absent.toml")


def test_a_process_refuses_a_file_without_the_tables_it_needs() -> None:
    cfg = parse_config({"aws": {"region": "eu-west-1"}}, "x.toml")
    with pytest.raises(ConfigError) as caught:
        cfg.require("agent", "push")
    assert [p.key for p in caught.value.problems] == ["[agent]", "[push]"]
    assert caught.value.source == "x.toml"


def test_the_packaged_example_configs_are_valid() -> None:
    """Every sample we ship loads with the loader its kind is read with: process configs with
    load_config, cloud-init settings (bootstrap-*.toml) with the bootstrap loader."""
    from azfed.bootstrap import BootstrapSettings, load_settings

    examples = sorted((Path(__file__).parents[2] / "packaging" / "examples").glob("*.toml"))
    assert {p.name for p in examples} >= {"agent.toml", "receiver.toml"}
    for path in examples:
        if path.name.startswith("bootstrap-"):
            assert isinstance(load_settings(path), BootstrapSettings), path
        else:
            assert isinstance(load_config(path), AzfedConfig), path


def test_memorys_cloudwatch_dimensions_must_include_the_instance(tmp_path: Path) -> None:
    """Without InstanceId one instance's memory.usage cannot be told from another's."""
    text = GOOD + '[collect]\ncwagent_dimensions = ["ImageId", "InstanceType"]\n'
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text))
    assert "[collect] cwagent_dimensions" in {p.key for p in caught.value.problems}
    ok = GOOD + '[collect]\ncwagent_dimensions = ["ImageId", "InstanceId", "InstanceType"]\n'
    assert load_config(_write(tmp_path, ok)).collect.cwagent_dimensions[1] == "InstanceId"


def test_a_meter_ceilometer_removed_is_refused_by_name(tmp_path: Path) -> None:
    """cpu_util (gone from Ceilometer since Stein) and the old disk names are no meters now."""
    for old in ("cpu_util", "disk.read.bytes"):
        with pytest.raises(ConfigError) as caught:
            load_config(_write(tmp_path, GOOD + f'[collect]\nmeters = ["cpu", "{old}"]\n'))
        assert any(p.key.startswith("[collect] meters") for p in caught.value.problems)

"""The annotated sample config the package ships is valid and builds an agent."""

from __future__ import annotations

from pathlib import Path

from azfed.config import load_config
from azfed.wire import ALL_METERS

SAMPLE = Path(__file__).resolve().parents[2] / "packaging" / "examples" / "agent.toml"


def test_the_shipped_agent_toml_is_valid_and_names_every_meter() -> None:
    cfg = load_config(SAMPLE)
    cfg.require("agent", "aws", "push", "spool")
    assert cfg.collect.meters == ALL_METERS
    assert cfg.agent is not None
    assert cfg.agent.provider == "ec2"

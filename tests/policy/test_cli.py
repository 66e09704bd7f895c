"""`azfed policy check` and `azfed policy simulate`, through the real click command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from azfed.cli import main
from click.testing import CliRunner

from testbed.policies import policy_doc

EXAMPLE = Path(__file__).resolve().parents[2] / "packaging" / "examples" / "policy.json"


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, ["--log-format", "json", *args])
    return r.exit_code, r.stdout, r.stderr


def test_check_accepts_the_example_with_exit_code_0() -> None:
    code, out, _ = run("policy", "check", str(EXAMPLE))
    assert code == 0
    assert "valid" in out


def test_check_lists_every_error_and_exits_3(tmp_path: Path) -> None:
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps(policy_doc(version=9, explicit_az="maybe")))
    code, _, err = run("policy", "check", str(bad))
    assert code == 3
    assert "2 problem(s)" in err
    assert "$.version = 9: const: 1 was expected" in err
    assert "$.explicit_az = 'maybe': enum:" in err


def test_check_json_names_path_value_and_reason(tmp_path: Path) -> None:
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps(policy_doc(burst={"instances": -1})))
    code, out, _ = run("policy", "check", "--json", str(bad))
    assert code == 3
    doc = json.loads(out)
    assert doc["valid"] is False
    assert doc["problems"][0]["key"] == "$.burst.instances"
    assert doc["problems"][0]["value"] == -1


def oscillating_trace(path: Path, n: int = 60) -> Path:
    """Memory swinging 70 <-> 85 % (the example's band is 65..80), one request a minute."""
    lines = ["t,memory_used_pct,instances,flavor,lifetime_s"]
    lines += [f"{60 * i},{85 if i % 4 < 2 else 70},10,m1.small,1800" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_simulate_counts_bursts_spend_and_no_flaps_on_an_oscillating_trace(tmp_path: Path) -> None:
    code, out, _ = run(
        "policy",
        "simulate",
        "--json",
        "--policy",
        str(EXAMPLE),
        "--trace",
        str(oscillating_trace(tmp_path / "t.csv")),
    )
    assert code == 0, out
    s = json.loads(out)
    assert s["requests"] == 60
    # the first 85 % bursts, and the load never falls to the 65 % return threshold: all public
    assert s["steps"][0]["az"] == "aws-az"
    assert s["bursts"] == 60
    assert (s["mode_switches"], s["flaps"]) == (1, 0)
    # 30 live instances at 0.0208/h each, ramping up over the hour
    assert 0 < s["spend"] < 60 * 0.0208
    assert s["peak_hourly_cost"] == pytest.approx(30 * 0.0208)


def test_simulate_without_hysteresis_flaps(tmp_path: Path) -> None:
    doc = json.loads(EXAMPLE.read_text())
    doc["return"]["memory_used_pct"] = 79  # the band now lies inside (70, 85): no hysteresis
    doc["cooldown"] = {"return_after_s": 0, "burst_after_s": 0}
    pol = tmp_path / "p.json"
    pol.write_text(json.dumps(doc))
    code, out, _ = run(
        "policy",
        "simulate",
        "--json",
        "--policy",
        str(pol),
        "--trace",
        str(oscillating_trace(tmp_path / "t.csv")),
    )
    assert code == 0
    assert json.loads(out)["flaps"] > 10


def test_simulate_writes_a_png_plot(tmp_path: Path) -> None:
    png = tmp_path / "out.png"
    code, out, _ = run(
        "policy",
        "simulate",
        "--policy",
        str(EXAMPLE),
        "--trace",
        str(oscillating_trace(tmp_path / "t.csv")),
        "--plot",
        str(png),
    )
    assert code == 0
    assert "bursts" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_names_the_line_and_column_of_a_bad_cell(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("t,memory_used_pct,instances\n0,50,1\n60,lots,1\n")
    code, _, err = run("policy", "simulate", "--policy", str(EXAMPLE), "--trace", str(trace))
    assert code == 3
    assert "line 3: memory_used_pct = 'lots': not a number" in err


def test_explain_reads_a_missing_filter_state_as_the_filters_fresh_start(tmp_path: Path) -> None:
    """Before the filter's first decision there is no state file: a fresh history, as the
    filter itself reads it; a state file that exists but is unreadable is still refused."""
    from azfed.errors import PolicyError
    from azfed.policy import History
    from azfed.policy.commands import read_history

    assert read_history(tmp_path / "state.json") == History()
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(PolicyError, match="unreadable filter state"):
        read_history(tmp_path / "state.json")

"""`azfed policy simulate`: spend against hand counts from the price table, the per-AZ
breakdown, what each JSON step says, the trace's refusals, the plot's content and --help."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from azfed.cli import main
from azfed.errors import AzfedError, InputError
from azfed.policy import parse_policy
from azfed.policy.simulate import (
    COLUMNS,
    MAX_PROBLEMS,
    TraceError,
    burst_spans,
    metrics_used,
    placement_rows,
    plot,
    read_trace,
    run,
    spend_series,
)
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLE = Path(__file__).resolve().parents[2] / "packaging" / "examples" / "policy.json"
DOC: dict[str, Any] = json.loads(EXAMPLE.read_text())
AWS, OS = DOC["public_azs"][0], DOC["public_azs"][1]
HOUR = 3600.0


def price(az: dict[str, Any], flavor: str) -> float:
    """From the policy file itself, not from the simulator."""
    return float(az["prices"][flavor])


def simulate(tmp_path: Path, trace: str, doc: dict[str, Any] | None = None) -> dict[str, Any]:
    (tmp_path / "t.csv").write_text(trace)
    (tmp_path / "p.json").write_text(json.dumps(doc or DOC))
    r = CliRunner().invoke(
        main,
        ["policy", "simulate", "--json", "--policy", str(tmp_path / "p.json"),
         "--trace", str(tmp_path / "t.csv")],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    out: dict[str, Any] = json.loads(r.stdout)
    return out


# --- spend -------------------------------------------------------------------------------------


def test_an_instance_that_ends_between_two_rows_is_charged_up_to_its_end(tmp_path: Path) -> None:
    # 85 % bursts to aws-az; the small one lives 90 s of the hour to the next row, the medium
    # one 30 min of the next hour; at 50 % (and 2 h after bursting) the policy returns local
    trace = (
        "t,memory_used_pct,instances,flavor,lifetime_s\n"
        "0,85,10,m1.small,90\n"
        "3600,85,10,m1.medium,1800\n"
        "7200,50,10,m1.small,\n"
    )
    s = simulate(tmp_path, trace)
    assert [st["az"] for st in s["steps"]] == ["aws-az", "aws-az", "local-az"]
    expected = price(AWS, "m1.small") * 90 / HOUR + price(AWS, "m1.medium") * 1800 / HOUR
    assert s["spend"] == pytest.approx(expected, abs=1e-6)
    assert s["azs"]["aws-az"]["instance_hours"] == pytest.approx((90 + 1800) / HOUR, abs=1e-6)


def test_lifetimes_run_past_the_last_row_and_an_open_one_ends_at_the_last_row(
    tmp_path: Path,
) -> None:
    trace = (
        "t,memory_used_pct,instances,flavor,lifetime_s\n"
        "0,85,10,m1.large,\n"  # no lifetime: to the last row, 600 s later
        "300,85,10,m1.small,7200\n"  # two hours, though the trace ends after 300 s more
        "600,85,10,m1.tiny,45\n"
    )
    s = simulate(tmp_path, trace)
    expected = (
        price(AWS, "m1.large") * 600 / HOUR
        + price(AWS, "m1.small") * 7200 / HOUR
        + price(AWS, "m1.tiny") * 45 / HOUR
    )
    assert s["spend"] == pytest.approx(expected, abs=1e-6)


def test_spend_and_placements_are_broken_down_per_az(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(DOC))
    doc["public_azs"][0]["caps"]["instances"] = 1  # the second live instance spills over
    trace = (
        "t,memory_used_pct,instances,flavor,lifetime_s\n"
        "0,85,10,m1.small,1000\n"
        "100,85,10,m1.medium,500\n"  # aws-az full: public-os-az
        "2000,85,10,m1.tiny,200\n"  # aws-az free again
        "2100,90,10,m1.small,30\n"  # aws-az full again: public-os-az
    )
    s = simulate(tmp_path, trace, doc)
    assert [st["az"] for st in s["steps"]] == ["aws-az", "public-os-az", "aws-az", "public-os-az"]
    aws = price(AWS, "m1.small") * 1000 / HOUR + price(AWS, "m1.tiny") * 200 / HOUR
    pos = price(OS, "m1.medium") * 500 / HOUR + price(OS, "m1.small") * 30 / HOUR
    azs = s["azs"]
    assert azs["aws-az"]["spend"] == pytest.approx(aws, abs=1e-6)
    assert azs["public-os-az"]["spend"] == pytest.approx(pos, abs=1e-6)
    assert s["spend"] == pytest.approx(aws + pos, abs=1e-6)
    assert (azs["aws-az"]["placements"], azs["aws-az"]["skipped"]) == (2, 2)
    assert (azs["public-os-az"]["placements"], azs["local-az"]["placements"]) == (2, 0)
    assert azs["aws-az"]["peak_instances"] == 1


FLAVORS = ["m1.tiny", "m1.small", "m1.medium"]  # priced in both public AZs
rows = st.lists(
    st.tuples(
        st.integers(0, 7200),  # the gap to the row before: rows far apart and close together
        st.floats(0, 100),
        st.sampled_from(FLAVORS),
        st.one_of(st.none(), st.integers(1, 20_000)),
    ),
    min_size=1,
    max_size=40,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=rows)
def test_spend_agrees_with_an_independent_recount_on_traces_with_gaps(
    tmp_path: Path, rows: list[tuple[int, float, str, int | None]]
) -> None:
    """Whatever the trace, spend = the sum over burst instances of price x hours lived,
    counted here from the steps' placements, the trace and the policy's price table."""
    t, lines = 0, ["t,memory_used_pct,instances,flavor,lifetime_s"]
    times = []
    for gap, mem, flavor, life in rows:
        t += gap
        times.append(t)
        lines.append(f"{t},{mem},10,{flavor},{'' if life is None else life}")
    s = simulate(tmp_path, "\n".join(lines) + "\n")
    azs = {a["name"]: a for a in DOC["public_azs"]}
    recount = 0.0
    for when, (_, _, flavor, life), step in zip(times, rows, s["steps"], strict=True):
        if step["az"] in azs:
            lived = life if life is not None else times[-1] - when
            recount += price(azs[step["az"]], flavor) * lived / HOUR
    assert s["spend"] == pytest.approx(recount, abs=1e-5)
    assert s["spend"] == pytest.approx(sum(a["spend"] for a in s["azs"].values()), abs=1e-5)


# --- what each step says --------------------------------------------------------------------


def test_each_json_step_gives_the_clock_the_rule_the_reason_and_the_azs_skipped(
    tmp_path: Path,
) -> None:
    doc = json.loads(json.dumps(DOC))
    doc["public_azs"][0]["caps"]["instances"] = 0
    s = simulate(tmp_path, "t,memory_used_pct,instances\n1796032800,85,10\n", doc)
    [step] = s["steps"]
    assert step == {
        "t": 1796032800.0,
        "clock": "2026-11-30T10:00:00+00:00",
        "flavor": "m1.small",
        "az": "public-os-az",
        "rule": "burst_threshold_exceeded",
        "reason": "memory_used_pct 85 >= 80",
        "mode": "burst",
        "window": None,
        "skipped": [{"az": "aws-az", "why": "cap instances: 1 would exceed 0"}],
        "failed_in": [],
        "spend_day": 0.0,
        "spend_month": 0.0,
    }


# --- capacity failures injected from the trace ------------------------------------------------


def test_a_boot_where_the_trace_says_no_capacity_goes_on_to_the_next_az_and_backs_it_off(
    tmp_path: Path,
) -> None:
    """Row 1: aws-az has no m1.small: the same boot lands in public-os-az (Nova's reschedule),
    and aws-az backs off for m1.small (300 s, the example's initial back-off): row 2 skips it
    while row 3 (another flavor) and row 4 (after the back-off) go there again."""
    trace = (
        "t,memory_used_pct,instances,flavor,no_capacity\n"
        "1000,85,10,m1.small,aws-az\n"
        "1100,85,10,m1.small,\n"
        "1200,85,10,m1.tiny,\n"
        "1400,85,10,m1.small,\n"
    )
    s = simulate(tmp_path, trace)
    steps = s["steps"]
    assert [st["az"] for st in steps] == ["public-os-az", "public-os-az", "aws-az", "aws-az"]
    assert steps[0]["failed_in"] == ["aws-az"]
    assert steps[0]["reason"].endswith("; no capacity in aws-az")
    assert steps[1]["skipped"][0]["az"] == "aws-az"
    assert "capacity failure of m1.small 100s ago" in steps[1]["skipped"][0]["why"]
    assert s["azs"]["aws-az"]["failed"] == 1
    assert s["azs"]["public-os-az"]["placements"] == 2


def test_consecutive_failures_double_the_backoff_in_the_simulation(tmp_path: Path) -> None:
    """A second failure right after the first back-off (300 s) ended doubles it to 600 s."""
    trace = (
        "t,memory_used_pct,instances,no_capacity\n"
        "1000,85,10,aws-az\n"
        "1300,85,10,aws-az\n"
        "1850,85,10,\n"
        "1900,85,10,\n"
    )
    steps = simulate(tmp_path, trace)["steps"]
    assert [st["failed_in"] for st in steps] == [["aws-az"], ["aws-az"], [], []]
    assert [st["az"] for st in steps] == ["public-os-az", "public-os-az", "public-os-az", "aws-az"]


def test_a_boot_with_no_capacity_anywhere_in_its_fallback_is_refused(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(DOC))
    doc["fallback"]["when_public_unavailable"] = "reject"
    trace = "t,memory_used_pct,instances,no_capacity\n1000,85,10,aws-az public-os-az\n"
    [step] = simulate(tmp_path, trace, doc)["steps"]
    assert (step["az"], step["failed_in"]) == (None, ["aws-az", "public-os-az"])


def test_no_capacity_must_name_public_azs_of_the_policy(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("t,memory_used_pct,instances,no_capacity\n1000,85,10,gcp\n")
    (tmp_path / "p.json").write_text(json.dumps(DOC))
    r = CliRunner().invoke(
        main,
        ["policy", "simulate", "--policy", str(tmp_path / "p.json"),
         "--trace", str(tmp_path / "t.csv")],
    )  # fmt: skip
    assert r.exit_code != 0
    assert "no_capacity = 'gcp': not a public AZ of the policy" in r.output


def test_t_may_be_an_iso_date_time_or_seconds_after_start(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text(
        "t,memory_used_pct,instances\n2026-12-07T08:00:00+01:00,10,1\n2026-12-07T07:30Z,10,1\n"
    )
    steps = read_trace(trace)
    assert [s.t for s in steps] == [
        datetime(2026, 12, 7, 7, 0, tzinfo=timezone.utc).timestamp(),
        datetime(2026, 12, 7, 7, 30, tzinfo=timezone.utc).timestamp(),
    ]
    trace.write_text("t,memory_used_pct,instances\n0,10,1\n90,10,1\n")
    assert [s.t for s in read_trace(trace, start=1000.0)] == [1000.0, 1090.0]


# --- refusals ------------------------------------------------------------------------------


def refusal(tmp_path: Path, text: str) -> list[tuple[str, object, str]]:
    trace = tmp_path / "t.csv"
    trace.write_text(text)
    with pytest.raises(TraceError) as info:
        read_trace(trace)
    return [(p.key, p.value, p.reason) for p in info.value.problems]


HEAD = "t,memory_used_pct,instances,vcpus_used_pct,lifetime_s\n"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "t,memory_used_pc,instances\n0,1,1\n",
            ("line 1: header", "memory_used_pc", "unknown column; did you mean 'memory_used_pct'?"),
        ),
        (
            "t,memory_used_pct\n0,1\n",
            (
                "line 1: header",
                ["t", "memory_used_pct"],
                "missing required column(s) ['instances']",
            ),
        ),
        (
            HEAD + "0,nan,1,,\n",
            (
                "line 2: memory_used_pct",
                "nan",
                "not a finite number (NaN and infinity are refused)",
            ),
        ),
        (
            HEAD + "0,10,1,inf,\n",
            ("line 2: vcpus_used_pct", "inf", "not a finite number (NaN and infinity are refused)"),
        ),
        (
            HEAD + "0,1,1,,\n60,120,1,,\n",
            ("line 3: memory_used_pct", "120", "Input should be less than or equal to 100"),
        ),
        (
            HEAD + "0,1,-2,,\n",
            ("line 2: instances", "-2", "Input should be greater than or equal to 0"),
        ),
        (HEAD + "0,1,2.5,,\n", ("line 2: instances", "2.5", "not a whole number")),
        (HEAD + "0,1,1,,0\n", ("line 2: lifetime_s", "0", "Input should be greater than 0")),
        (HEAD + "0,,1,,\n", ("line 2: memory_used_pct", "", "required: the cell is empty")),
        (
            HEAD + "60,1,1,,\n30,1,1,,\n",
            ("line 3: t", "30", "earlier than line 2: time goes backwards"),
        ),
        (
            HEAD + "2026-12-07T08:00,1,1,,\n",
            (
                "line 2: t",
                "2026-12-07T08:00",
                "an ISO 8601 date-time needs its UTC offset (+01:00, Z...)",
            ),
        ),
        (HEAD + "soon,1,1,,\n", ("line 2: t", "soon", "neither seconds nor an ISO 8601 date-time")),
        (HEAD + "0,1,1,,,7\n", ("line 2: row", ["7"], "extra cells")),
    ],
)
def test_a_bad_trace_is_refused_naming_the_line_the_column_and_the_value(
    tmp_path: Path, text: str, problem: tuple[str, object, str]
) -> None:
    assert refusal(tmp_path, text) == [problem]


def test_every_bad_cell_is_listed_up_to_a_bound(tmp_path: Path) -> None:
    found = refusal(tmp_path, HEAD + "".join(f"{i},x,y,,\n" for i in range(MAX_PROBLEMS)))
    assert len(found) == MAX_PROBLEMS + 1
    assert found[:2] == [
        ("line 2: memory_used_pct", "x", "not a number"),
        ("line 2: instances", "y", "not a whole number"),
    ]
    assert found[-1] == ("...", MAX_PROBLEMS, "more problems not shown")


def test_a_trace_error_is_an_azfed_input_error_and_the_cli_exits_3(tmp_path: Path) -> None:
    assert issubclass(TraceError, InputError)
    assert issubclass(TraceError, AzfedError)
    (tmp_path / "t.csv").write_text("t,memory_used_pct,instance\n0,1,1\n")
    r = CliRunner().invoke(
        main, ["policy", "simulate", "--policy", str(EXAMPLE), "--trace", str(tmp_path / "t.csv")]
    )
    assert r.exit_code == 3
    assert "line 1: header = 'instance': unknown column; did you mean 'instances'?" in r.stderr


def test_help_documents_every_trace_column() -> None:
    r = CliRunner().invoke(main, ["policy", "simulate", "--help"])
    assert r.exit_code == 0
    assert "Trace (CSV" in r.output
    for column in COLUMNS:
        assert f"\n  {column}" in r.output


# --- the plot's content ----------------------------------------------------------------------


def test_the_plot_draws_every_metric_the_policy_uses_the_burst_band_and_every_az(
    tmp_path: Path,
) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text(
        "t,memory_used_pct,instances,requested_az\n"
        "0,10,1,\n60,85,1,\n120,85,1,\n1000,10,1,\n1100,10,1,elsewhere\n"
    )
    doc = json.loads(json.dumps(DOC))
    doc["public_azs"][1]["caps"]["instances"] = 0
    doc["public_azs"][0]["caps"]["instances"] = 1  # the second burst finds no room: refused
    doc["fallback"]["when_public_unavailable"] = "reject"
    result = run(parse_policy(doc), read_trace(trace))
    assert metrics_used(result) == ["memory_used_pct", "vcpus_used_pct", "instances"]
    assert burst_spans(result) == [(60.0, 1000.0)]
    assert [d.az for d in result.decisions] == ["local-az", "aws-az", None, "local-az", "elsewhere"]
    assert placement_rows(result) == ["local-az", "aws-az", "public-os-az", "elsewhere", "refused"]
    only_memory = dict(doc, burst={"memory_used_pct": 80}, **{"return": {"memory_used_pct": 60}})
    assert metrics_used(run(parse_policy(only_memory), read_trace(trace))) == ["memory_used_pct"]


def test_the_plot_draws_each_spend_budget_with_what_each_step_saw_spent(tmp_path: Path) -> None:
    """A policy with a day budget gets a spend panel: the day's spend as each step saw it
    (rising with the bursts' lifetimes), the budget and its warning level; the PNG is drawn."""
    trace = tmp_path / "t.csv"
    trace.write_text("t,memory_used_pct,instances\n0,85,1\n3600,85,1\n7200,85,1\n")
    doc = json.loads(json.dumps(DOC))
    doc["budgets"] = {"spend": {"day": 100.0, "warn_at_pct": 50}}
    result = run(parse_policy(doc), read_trace(trace))
    series = spend_series(result)
    assert list(series) == ["day"]
    day = series["day"]
    assert (day.budget, day.warn_at) == (100.0, 50.0)
    assert day.spent == [s.of("day") for s in result.spent]
    assert day.spent[0] == 0.0 < day.spent[1] < day.spent[2]
    unbudgeted = {k: v for k, v in doc.items() if k != "budgets"}
    assert spend_series(run(parse_policy(unbudgeted), read_trace(trace))) == {}
    plot(result, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes().startswith(b"\x89PNG")

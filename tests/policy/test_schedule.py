"""Schedules: which window applies when (weekdays, windows past midnight, 24:00, DST in
Europe/Paris), what decide does in each, the switch at a boundary, the validation of every
schedule key, and the window shown by explain, the filter's log line and the simulator."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azfed.errors import PolicyError
from azfed.policy import Flavor, History, Request, decide, explain, parse_policy
from azfed.policy.commands import render_explain
from azfed.policy.engine import PolicyEngine
from azfed.policy.model import Policy
from azfed.policy.simulate import metrics_used, read_trace, run
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from testbed.policies import Host, load, policy_doc

SMALL = Flavor("small", 1, 512)
SCHEDULE: dict[str, Any] = {
    "$comment": "first match wins: the order is part of the meaning",
    "timezone": "Europe/Paris",
    "windows": [
        # the spring-forward Sunday has no such hour; the fall-back one has it twice
        {"name": "dst-hour", "days": ["sun"], "from": "02:00", "to": "03:00"},
        {
            "name": "business",
            "days": ["mon", "tue", "wed", "thu", "fri"],
            "from": "08:00",
            "to": "19:00",
            "burst": {"memory_used_pct": 50},
            "return": {"memory_used_pct": 40},
        },
        {"name": "monday-evening", "days": ["mon"], "from": "19:00", "to": "24:00"},
        {
            "name": "weekend-night",
            "days": ["fri", "sat"],
            "from": "23:00",
            "to": "03:00",
            "caps": {"aws": {"instances": 2}},
        },
        {
            "$comment": "never burst at night",
            "name": "night",
            "from": "22:00",
            "to": "06:00",
            "caps": {"aws": {"instances": 0}, "os": {"instances": 0}},
        },
    ],
}


def with_schedule(schedule: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    return policy_doc(schedule=copy.deepcopy(schedule or SCHEDULE), **changes)


POLICY = parse_policy(with_schedule(), "scheduled")


def at(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def window(policy: Policy, now: float) -> str | None:
    _, w = policy.in_force(now)
    return w.name if w else None


# --- which window, when --------------------------------------------------------------------------

WHEN = [
    # winter: Paris is UTC+1
    ("2026-12-07T07:00:00Z", "business", "Monday 08:00, the first second of the window"),
    ("2026-12-07T06:59:59Z", None, "Monday 07:59:59, one second before"),
    ("2026-12-07T17:59:59Z", "business", "Monday 18:59:59, the last second"),
    ("2026-12-07T18:00:00Z", "monday-evening", "Monday 19:00: the end is exclusive"),
    ("2026-12-07T22:59:59Z", "monday-evening", "Monday 23:59:59, a window to 24:00"),
    ("2026-12-07T23:00:00Z", "night", "Tuesday 00:00: 24:00 is the end of Monday"),
    ("2026-12-08T04:59:59Z", "night", "Tuesday 05:59:59, Monday's night past midnight"),
    ("2026-12-08T05:00:00Z", None, "Tuesday 06:00, the night is over"),
    ("2026-12-12T09:00:00Z", None, "Saturday 10:00: business hours are weekdays only"),
    ("2026-12-11T22:00:00Z", "weekend-night", "Friday 23:00"),
    ("2026-12-12T01:59:59Z", "weekend-night", "Saturday 02:59:59, Friday's window past midnight"),
    ("2026-12-12T02:00:00Z", "night", "Saturday 03:00, back to the every-day night"),
    ("2026-12-10T22:30:00Z", "night", "Thursday 23:30: Thursday is not a weekend-night day"),
    ("2026-12-11T00:30:00Z", "night", "Friday 00:30 is Thursday's night, not Friday's"),
    ("2026-12-13T01:30:00Z", "dst-hour", "Sunday 02:30: the first window that matches wins"),
    # summer: Paris is UTC+2, so business hours start an hour earlier in UTC
    ("2026-06-01T06:00:00Z", "business", "Monday 08:00 CEST"),
    ("2026-06-01T05:59:59Z", None, "Monday 07:59:59 CEST"),
    # spring forward, Sunday 2026-03-29: 02:00 CET jumps to 03:00 CEST
    ("2026-03-29T00:59:59Z", "weekend-night", "01:59:59 CET, the last second before the jump"),
    ("2026-03-29T01:00:00Z", "night", "03:00 CEST: weekend-night ended, dst-hour was skipped"),
    # fall back, Sunday 2026-10-25: 03:00 CEST goes back to 02:00 CET
    ("2026-10-25T00:30:00Z", "dst-hour", "02:30 CEST, the first time"),
    ("2026-10-25T01:30:00Z", "dst-hour", "02:30 CET, the second time"),
    ("2026-10-25T02:00:00Z", "night", "03:00 CET"),
]


@pytest.mark.parametrize(("utc", "expected", "why"), WHEN, ids=[w[2] for w in WHEN])
def test_the_window_in_force_at_each_instant(utc: str, expected: str | None, why: str) -> None:
    assert window(POLICY, at(utc)) == expected, why


@pytest.mark.parametrize(
    ("day", "minutes"),
    [("2026-03-29", 0), ("2026-10-25", 120), ("2026-12-13", 60)],
    ids=["spring forward: never", "fall back: twice", "an ordinary Sunday: once"],
)
def test_a_window_inside_the_dst_change_lasts_what_the_wall_clock_says(
    day: str, minutes: int
) -> None:
    midnight_utc = datetime.fromisoformat(f"{day}T00:00:00+00:00") - timedelta(hours=2)
    found = sum(
        window(POLICY, (midnight_utc + timedelta(minutes=m)).timestamp()) == "dst-hour"
        for m in range(26 * 60)
    )
    assert found == minutes


# --- what decide does in each window ------------------------------------------------------------

DECISIONS = [
    # (local time in Paris, memory %, rule, az, window)
    ("2026-12-07T10:00:00+01:00", 55.0, "burst_threshold_exceeded", "aws", "business"),
    ("2026-12-12T10:00:00+01:00", 55.0, "below_burst_threshold", "local", None),
    ("2026-12-07T07:59:59+01:00", 55.0, "below_burst_threshold", "local", None),
    ("2026-12-07T08:00:00+01:00", 55.0, "burst_threshold_exceeded", "aws", "business"),
    ("2026-12-08T01:00:00+01:00", 85.0, "public_unavailable_local", "local", "night"),
    ("2026-12-12T01:00:00+01:00", 85.0, "burst_threshold_exceeded", "aws", "weekend-night"),
]


@pytest.mark.parametrize(("when", "mem", "rule", "az", "name"), DECISIONS)
def test_decide_applies_the_thresholds_and_caps_of_the_window_in_force(
    when: str, mem: float, rule: str, az: str, name: str | None
) -> None:
    d = decide(Request(SMALL), load(mem), POLICY, History(), at(when))
    assert (d.rule, d.az, d.window) == (rule, az, name), d.reason


def test_the_night_window_says_which_caps_stopped_the_burst() -> None:
    d = decide(Request(SMALL), load(85.0), POLICY, History(), at("2026-12-08T01:00:00+01:00"))
    assert d.skipped == (
        ("aws", "cap instances: 1 would exceed 0"),
        ("os", "cap instances: 1 would exceed 0"),
    )


def test_a_window_keeps_the_top_level_values_it_does_not_set() -> None:
    business, _ = POLICY.in_force(at("2026-12-07T10:00:00+01:00"))
    assert (business.burst.memory_used_pct, business.burst.instances) == (50, 10)
    night, _ = POLICY.in_force(at("2026-12-08T01:00:00+01:00"))
    aws = night.public("aws")
    assert aws is not None
    assert (aws.caps.instances, aws.caps.vcpus, aws.caps.hourly_cost) == (0, 20, 1.0)


def test_without_a_schedule_nothing_changes_with_the_time() -> None:
    policy = parse_policy(policy_doc())
    assert policy.in_force(at("2026-12-07T10:00:00+01:00")) == (policy, None)


# --- validation ----------------------------------------------------------------------------------


def problems(doc: Any) -> list[tuple[str, object, str]]:
    with pytest.raises(PolicyError) as info:
        parse_policy(doc, "t")
    return [(p.key, p.value, p.reason) for p in info.value.problems]


def one_window(**w: Any) -> dict[str, Any]:
    return {"timezone": "UTC", "windows": [{"name": "w", "from": "08:00", "to": "18:00", **w}]}


@pytest.mark.parametrize(
    ("schedule", "key", "value", "reason"),
    [
        (
            {"timezone": "Europe/Pariss", "windows": SCHEDULE["windows"]},
            "$.schedule.timezone",
            "Europe/Pariss",
            "unknown time zone: use an IANA name such as Europe/Paris or UTC",
        ),
        (one_window(**{"from": "25:00"}), "$.schedule.windows[0].from", "25:00", "pattern:"),
        (one_window(**{"from": "8:00"}), "$.schedule.windows[0].from", "8:00", "pattern:"),
        (one_window(to="24:30"), "$.schedule.windows[0].to", "24:30", "anyOf:"),
        (one_window(days=["monday"]), "$.schedule.windows[0].days[0]", "monday", "enum:"),
        (one_window(days=[]), "$.schedule.windows[0].days", [], "minItems:"),
        (
            one_window(to="08:00"),
            "$.schedule.windows[0].to",
            "08:00",
            "equals from: for all day use 00:00 to 24:00",
        ),
        (
            one_window(caps={"gcp": {"instances": 1}}),
            "$.schedule.windows[0].caps.gcp",
            {"instances": 1},
            "not a public AZ of this policy",
        ),
        (
            one_window(caps={"aws": {"instances": -1}}),
            "$.schedule.windows[0].caps.aws.instances",
            -1,
            "minimum:",
        ),
        (
            one_window(burst={"memory_used_pct": 50}),
            "$.schedule.windows[0].return.memory_used_pct",
            60,
            "must be below burst.memory_used_pct = 50 (hysteresis, with the top-level values",
        ),
        (
            one_window(burst={"vcpus_used_pct": 50}),
            "$.schedule.windows[0].return.vcpus_used_pct",
            None,
            "required: burst.vcpus_used_pct is set (hysteresis)",
        ),
        (
            one_window(colour="blue"),
            "$.schedule.windows[0]",
            None,
            "additionalProperties:",
        ),
        ({"windows": one_window()["windows"]}, "$.schedule", None, "required:"),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_key_and_the_value(
    schedule: dict[str, Any], key: str, value: object, reason: str
) -> None:
    found = problems(with_schedule(schedule))
    assert len(found) == 1, found
    [(got_key, got_value, got_reason)] = found
    assert got_key == key
    assert got_reason.startswith(reason), got_reason
    if value is not None:
        assert got_value == value


def test_window_names_are_unique() -> None:
    schedule = one_window()
    schedule["windows"].append({"name": "w", "from": "20:00", "to": "22:00"})
    assert problems(with_schedule(schedule)) == [
        ("$.schedule.windows[1].name", "w", "window names must be unique")
    ]


def test_a_window_cost_cap_needs_the_az_prices() -> None:
    doc = with_schedule(one_window(caps={"os": {"hourly_cost": 1}}))
    del doc["public_azs"][1]["prices"]
    assert problems(doc) == [
        (
            "$.public_azs[1].prices",
            None,
            "required: $.schedule.windows[0].caps.os.hourly_cost is set",
        )
    ]


def test_the_schedule_example_in_the_docs_is_valid_with_the_shipped_example_policy() -> None:
    root = Path(__file__).resolve().parents[2]
    blocks = (root / "docs" / "policy.md").read_text().split("```json\n")[1:]
    [example] = [b.split("```", 1)[0] for b in blocks if '"schedule"' in b]
    doc = json.loads((root / "packaging" / "examples" / "policy.json").read_text())
    policy = parse_policy({**doc, **json.loads(example)})
    assert policy.schedule is not None


# --- where the window shows -----------------------------------------------------------------------


def test_explain_shows_the_window_and_the_thresholds_it_sets() -> None:
    now = at("2026-12-07T10:00:00+01:00")
    doc = explain(load(55.0), POLICY, History(), now, SMALL)
    assert doc["schedule"] == {
        "timezone": "Europe/Paris",
        "local_time": "2026-12-07T10:00:00+01:00",
        "window": "business",
        "window_hours": "mon,tue,wed,thu,fri 08:00-19:00",
    }
    assert doc["local"]["thresholds"]["memory_used_pct"] == {
        "value": 55.0,
        "burst": 50.0,
        "return": 40,
    }
    assert doc["next_boot"]["window"] == "business"
    text = render_explain(doc)
    assert "schedule: window business (mon,tue,wed,thu,fri 08:00-19:00) at 2026-12-07T10:00" in text
    night = explain(load(85.0), POLICY, History(), at("2026-12-08T01:00:00+01:00"), SMALL)
    assert [p["caps"]["instances"]["cap"] for p in night["public"]] == [0, 0]
    outside = render_explain(explain(load(), POLICY, History(), at("2026-12-12T10:00Z"), SMALL))
    assert "schedule: no window at 2026-12-12T11:00:00+01:00 in Europe/Paris" in outside


def test_the_filter_logs_the_window_of_each_decision(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps(with_schedule()))
    engine = PolicyEngine(tmp_path / "p.json", clock=lambda: at("2026-12-07T10:00:00+01:00"))
    engine.current()
    with capture_logs() as logs:
        engine.filter([Host("l1", "local"), Host("p1", "aws")], Request(SMALL))
    [line] = logs
    assert (line["event"], line["rule"], line["window"]) == (
        "placement.decided",
        "below_burst_threshold",
        "business",
    )


def test_the_simulator_replays_the_schedule_on_the_traces_clock(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text(
        "t,memory_used_pct,instances,flavor\n"
        "2026-12-07T07:59:00+01:00,55,1,small\n"
        "2026-12-07T08:00:00+01:00,55,1,small\n"
        "2026-12-07T19:30:00+01:00,30,1,small\n"
    )
    result = run(POLICY, read_trace(trace))
    steps = result.as_dict()["steps"]
    assert [(s["window"], s["rule"]) for s in steps] == [
        (None, "below_burst_threshold"),
        ("business", "burst_threshold_exceeded"),
        ("monday-evening", "below_return_threshold"),
    ]
    assert [p.burst.memory_used_pct for p in result.in_force] == [80, 50, 80]
    # the same trace in seconds from a --start: the same decisions
    trace.write_text(
        "t,memory_used_pct,instances,flavor\n0,55,1,small\n60,55,1,small\n41460,30,1,small\n"
    )
    start = at("2026-12-07T07:59:00+01:00")
    again = run(POLICY, read_trace(trace, start=start)).as_dict()["steps"]
    assert [(s["window"], s["rule"]) for s in again] == [(s["window"], s["rule"]) for s in steps]
    assert metrics_used(result) == ["memory_used_pct", "instances"]


def covers_by_calendar(w: dict[str, Any], local: datetime) -> bool:
    """An independent reading of a window: the intervals it spans on the calendar, today's
    and yesterday's (a window past midnight), compared with the naive local time."""
    days = w.get("days", ["mon", "tue", "wed", "thu", "fri", "sat", "sun"])
    naive = local.replace(tzinfo=None)
    for start_day in (naive.date(), naive.date() - timedelta(days=1)):
        if start_day.strftime("%a").lower() not in days:
            continue
        begin = datetime.combine(start_day, datetime.min.time()) + _hhmm(w["from"])
        end = datetime.combine(start_day, datetime.min.time()) + _hhmm(w["to"])
        if end <= begin:
            end += timedelta(days=1)
        if begin <= naive < end:
            return True
    return False


def _hhmm(text: str) -> timedelta:
    hours, minutes = text.split(":")
    return timedelta(hours=int(hours), minutes=int(minutes))


clocks = st.tuples(st.integers(0, 23), st.sampled_from([0, 15, 30, 59])).map(
    lambda hm: f"{hm[0]:02d}:{hm[1]:02d}"
)
windows = st.fixed_dictionaries(
    {"name": st.just("w"), "from": clocks, "to": st.one_of(clocks, st.just("24:00"))},
    optional={
        "days": st.lists(
            st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]),
            min_size=1,
            max_size=7,
            unique=True,
        )
    },
).filter(lambda w: w["from"] != w["to"])


@settings(max_examples=300, deadline=None)
@given(
    w=windows,
    zone=st.sampled_from(["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "UTC"]),
    now=st.integers(1_767_225_600, 1_798_761_600),  # 2026, DST changes included
)
def test_a_window_covers_exactly_the_calendar_intervals_it_names(
    w: dict[str, Any], zone: str, now: int
) -> None:
    policy = parse_policy(policy_doc(schedule={"timezone": zone, "windows": [w]}))
    assert policy.schedule is not None
    local = policy.schedule.local(now)
    assert (window(policy, now) == "w") == covers_by_calendar(w, local), local.isoformat()

"""The checks of each sample beyond the schema (its meter's unit, type, resource type and
device; its volume; its instance; its time), made fast for the receiver (a sample stating its
meter's facts skips the calls that describe one that does not; each distinct timestamp is
judged once per report), find the very problems, in the same order, that the checks made one
call at a time found. The oracle below is that earlier code; it lives here, not in wire."""

from __future__ import annotations

from typing import Any

from azfed import wire
from azfed.errors import Problem
from azfed.receiver import typed
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.receiver.conftest import NOW
from tests.receiver.test_fuzz import generated_reports

WINDOW = wire.Window.around(NOW, max_age_s=7 * 86400, max_future_s=300)
UNKNOWN = "00000000-0000-4000-8000-0000000000ff"


def _one_call_at_a_time(
    report: dict[str, Any], known: set[str], problems: list[Problem], window: wire.Window | None
) -> None:
    v1 = report["version"] == 1
    owner_key = "resource_id" if v1 else "instance_uuid"
    for i, s in enumerate(report["samples"]):
        if len(problems) >= wire._MAX_PROBLEMS:
            return
        if v1:
            wire._unit_problem(i, s, wire.V1_METERS[s["meter"]], problems)
        else:
            fact = wire.METERS[s["meter"]]
            wire._unit_problem(i, s, (fact.unit, fact.type), problems)
            wire._resource_problem(i, s, problems)
        wire._volume_problem(i, s["volume"], problems)
        if s[owner_key].lower() not in known:
            reason = "unknown instance: no instance of this report has this instance_uuid"
            problems.append(Problem(f"samples[{i}].{owner_key}", s[owner_key], reason))
        wire._check_time(f"samples[{i}].timestamp", s["timestamp"], problems, window)


@st.composite
def reports_with_many_samples(draw: st.DrawFn) -> dict[str, Any]:
    """Generated reports, their samples repeated (shared timestamps, past the problem cap),
    some of them of an instance the report does not list."""
    report = draw(generated_reports())
    samples = report["samples"] * draw(st.integers(1, 30))
    owner = "resource_id" if report["version"] == 1 else "instance_uuid"
    for s in draw(st.lists(st.sampled_from(samples), max_size=2)) if samples else []:
        s[owner] = UNKNOWN
    report["samples"] = samples
    return report


@settings(
    max_examples=1000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(report=reports_with_many_samples())
def test_the_sample_checks_find_what_one_call_at_a_time_found(report: dict[str, Any]) -> None:
    assume(not wire._schema_problems(report, typed.fits))  # they run past the schema only
    known = {inst["instance_uuid"].lower() for inst in report["instances"]}
    for window in (WINDOW, None):
        fast: list[Problem] = []
        wire._sample_problems(report, known, fast, window)
        oracle: list[Problem] = []
        _one_call_at_a_time(report, known, oracle, window)
        assert fast == oracle

"""The receiver's typed check (azfed.receiver.typed, compiled by pydantic-core) and the
published contract (wire's JSON Schemas, in openapi.json) give every report the same verdict:
the contract's examples, valid and invalid, of both versions, and hypothesis's generated
reports and mutations of the examples. And a receiver's answer is the same with the typed
check as without it: the same problems, key, value and reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from azfed import wire
from azfed.errors import InputError, Problem
from azfed.receiver import typed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from tests.receiver.conftest import DATA, NOW, example
from tests.receiver.test_fuzz import (
    NASTY_NUMBERS,
    NASTY_STRINGS,
    generated_reports,
    json_values,
    mutated_reports,
)

# the published schemas themselves, checked as openapi.json's readers check them
PUBLISHED = {
    version: Draft202012Validator(schema, format_checker=wire.formats())
    for version, schema in wire.SCHEMAS.items()
}
EXAMPLES = sorted(DATA.glob("*.json"))
WINDOW = wire.Window.around(NOW, max_age_s=7 * 86400, max_future_s=300)
PROPERTY = settings(
    max_examples=1500,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _report_of(path: Path) -> Any:
    data = example(path.stem)
    return data["report"] if path.stem.startswith("bad-") else data


def _schema_fits(report: Any) -> bool:
    """The published schema's verdict, for the version the report names (the current one if
    it names none or one no schema has), as wire.validate_report picks it."""
    version = report.get("version") if isinstance(report, dict) else None
    known = type(version) in (int, float) and version in PUBLISHED
    return PUBLISHED[int(version) if known else wire.CONTRACT_VERSION].is_valid(report)


def _consulted(report: Any) -> bool:
    """True where validate_report asks the typed check: past its checks of sizes, nesting,
    characters and version, which it makes first with either check."""
    asked: list[Any] = []
    _problems(report, fits=lambda r: asked.append(r) is not None)
    return bool(asked)


def _problems(report: Any, **kwargs: Any) -> list[Problem] | None:
    try:
        wire.validate_report(report, window=WINDOW, **kwargs)
    except InputError as err:
        return err.problems
    return None


def _agree(report: Any) -> None:
    if _consulted(report):
        assert typed.fits(report) == _schema_fits(report), report
    assert _problems(report, fits=typed.fits) == _problems(report)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_gets_the_same_verdict_from_the_typed_check_and_the_schema(
    path: Path,
) -> None:
    report = _report_of(path)
    assert typed.fits(report) == _schema_fits(report)
    assert _problems(report, fits=typed.fits) == _problems(report)


def test_the_examples_cover_both_verdicts_and_both_versions() -> None:
    """Else the test above would show agreement on one side only."""
    seen = {(_report_of(p)["version"], typed.fits(_report_of(p))) for p in EXAMPLES}
    assert seen >= {(1, True), (1, False), (2, True), (2, False)}, seen


EDGES: dict[str, tuple[str, Any]] = {
    # what JSON Schema admits that a strict type would not, and the rules beyond it refuse
    "seq_with_a_fraction_of_zero": ("seq", 12345.0),
    "seq_as_a_float_past_max_seq": ("seq", float(wire.MAX_SEQ + 1)),
    "version_with_a_fraction_of_zero": ("version", 2.0),
    "seq_as_a_bool": ("seq", True),
    "seq_as_a_string": ("seq", "42"),
    # exact bounds: 2**63 as a double must not pass for 2**63 - 1
    "volume_at_max_volume": ("samples.1.volume", wire.MAX_VOLUME),
    "volume_one_past_max_volume": ("samples.1.volume", wire.MAX_VOLUME + 1),
    "volume_as_the_double_2_63": ("samples.1.volume", 2.0**63),
    "volume_as_a_bool": ("samples.1.volume", False),
    "volume_negative_zero": ("samples.1.volume", -0.0),
    # patterns: `$` before a final newline (jsonschema's `re` matches there), Unicode digits
    "agent_id_with_a_final_newline": ("agent_id", "aws-vpc-1\n"),
    "time_with_a_final_newline": ("sent_at", "2025-01-15T10:00:05Z\n"),
    "uuid_with_a_final_newline": (
        "instances.0.instance_uuid", "6f1c7a52-3b1e-4c2a-9d1e-0a5b8e2f4c11\n"
    ),
    "time_in_arabic_indic_digits": ("sent_at", "٢٠٢٥-01-15T10:00:05Z"),
    "ip_with_leading_zeros": ("instances.0.ips.public.0", "010.0.0.1"),
    "ipv6_with_a_zone": ("instances.0.ips.private.0", "fe80::1%eth0"),
    "ipv6": ("instances.0.ips.private.0", "::1"),
    "remote_id_empty": ("instances.0.remote_id", ""),
    "status_checks_null": ("instances.0.status_checks", None),
    "az_null": ("instances.0.az", None),
    "device_null": ("samples.1.device", None),
    "epoch_null": ("epoch", None),
    "epoch_ok": ("epoch", "a1b2c3"),
}  # fmt: skip


def _set(report: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    target: Any = report
    for p in parents:
        target = target[int(p)] if p.isdigit() else target[p]
    target[int(last) if last.isdigit() else last] = value


@pytest.mark.parametrize("name", sorted(EDGES))
def test_the_typed_check_reads_the_schemas_edges_as_jsonschema_does(name: str) -> None:
    report = example("report-full")
    _set(report, *EDGES[name])
    _agree(report)


@pytest.mark.parametrize("name", ["agent_id_with_a_final_newline", "time_with_a_final_newline"])
def test_a_final_newline_is_where_the_typed_check_is_stricter_and_never_asked(name: str) -> None:
    """jsonschema's `re.search` lets `$` match before a final newline, pydantic's Rust engine
    does not; wire refuses the newline (a control character) before it asks the typed check,
    so the answer is the same."""
    report = example("report-full")
    _set(report, *EDGES[name])
    assert (_schema_fits(report), typed.fits(report), _consulted(report)) == (True, False, False)
    assert _problems(report, fits=typed.fits) == _problems(report)


@settings(PROPERTY)
@given(report=generated_reports() | mutated_reports())
def test_generated_and_mutated_reports_get_the_same_verdict_and_the_same_problems(
    report: Any,
) -> None:
    _agree(report)


@st.composite
def one_value_changed(draw: st.DrawFn) -> Any:
    """An example with one leaf or member replaced: near misses, where a verdict can flip."""
    report = _report_of(draw(st.sampled_from(EXAMPLES)))
    node: Any = report
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return report
        key = draw(st.sampled_from(keys))
        if not isinstance(node[key], dict | list) or draw(st.booleans()):
            break
        node = node[key]
    node[key] = draw(json_values | st.sampled_from(NASTY_STRINGS) | st.sampled_from(NASTY_NUMBERS))
    return report


@settings(PROPERTY)
@given(report=one_value_changed())
def test_reports_one_value_off_get_the_same_verdict_and_the_same_problems(report: Any) -> None:
    _agree(report)


# --- one pass: parse and schema (typed.parse_fitting) against wire.loads and the typed check ---


def _compact(report: Any) -> bytes:
    """A report as an agent writes it (wire.dumps: no whitespace)."""
    return json.dumps(report, separators=(",", ":"), allow_nan=False).encode()


def _vouched_for(text: bytes) -> bool:
    """parse_fitting answers None, or what wire.loads parses when the typed check passes it:
    never a report the step-by-step path would read otherwise or refuse."""
    fast = typed.parse_fitting(text)
    if fast is None:
        return False
    slow = wire.loads(text)  # raises if the one pass let through what it refuses
    assert typed.fits(slow), text[:200]
    # written out, so that 2 and 2.0 differ (they are equal in Python)
    assert json.dumps(fast, sort_keys=True) == json.dumps(slow, sort_keys=True)
    return True


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_one_pass_reads_every_example_as_wire_loads_does(path: Path) -> None:
    """The current version's valid examples, written as agents write them, take the one
    pass (else the receiver gains nothing); every other example is left to wire.loads."""
    report = _report_of(path)
    taken = _vouched_for(_compact(report))
    assert taken == (report.get("version") == wire.CONTRACT_VERSION and typed.fits(report))


def test_a_member_named_twice_is_never_taken_by_the_one_pass() -> None:
    """pydantic-core keeps the last of two members, wire.loads refuses the body: the one
    pass answers None, so the receiver's answer is wire.loads' 400. A space before a colon,
    which could hide the extra member from the count, sends the text to wire.loads too."""
    text = _compact(example("report-full"))
    assert typed.parse_fitting(text) is not None
    twice = text.replace(b'"seq":', b'"seq":7,"seq":', 1)
    hidden = twice.replace(b'"agent_id":', b'"agent_id" :', 1)
    for body in (twice, hidden):
        assert typed.parse_fitting(body) is None
        with pytest.raises(ValueError, match="appears twice"):
            wire.loads(body)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"seq":', b'"seq": '),  # whitespace: left to wire.loads
        (b'"version":2', b'"version":2.0'),  # fits, refused after: left to wire.loads
        (b'"volume":', b'"volume":1e400,"x":'),  # beyond a double, and an unknown member
        (b'"volume":', b'"volume":NaN,"x":'),
        (b'"seq":', b'"seq":123456789012345678901234,"s":'),
    ],
)
def test_one_pass_agrees_with_wire_loads_on_near_misses(old: bytes, new: bytes) -> None:
    text = _compact(example("report-full"))
    assert old in text
    assert not _vouched_for(text.replace(old, new, 1))


@settings(PROPERTY)
@given(report=generated_reports() | mutated_reports() | one_value_changed())
def test_one_pass_vouches_only_for_what_wire_loads_reads_the_same(report: Any) -> None:
    try:
        text = _compact(report)
    except ValueError:  # NaN or an infinity: not JSON, no agent writes it
        return
    _vouched_for(text)

"""A report parsed from a plain JSON text (wire.plain_text: ASCII, no escape, no DEL) skips
the walk over its strings for forbidden characters once the typed check passes it; what the
receiver answers stays the same: the same problems, key, value and reason, whichever way the
report was written (escaped or raw UTF-8) and whether or not the walk ran."""

from __future__ import annotations

import json
from typing import Any

import pytest
from azfed import wire
from azfed.errors import InputError, Problem
from azfed.receiver import typed
from hypothesis import assume, given, settings

from tests.receiver.conftest import example
from tests.receiver.test_fuzz import generated_reports, mutated_reports
from tests.receiver.test_typed import PROPERTY as TYPED_PROPERTY
from tests.receiver.test_typed import WINDOW

# test_typed's window and property settings, with fewer examples
PROPERTY = settings(TYPED_PROPERTY, max_examples=1000)


def _problems(report: Any, **kwargs: Any) -> list[Problem] | None:
    try:
        wire.validate_report(report, window=WINDOW, **kwargs)
    except InputError as err:
        return err.problems
    return None


def _texts(report: Any) -> list[bytes]:
    """The report as agents write it (ASCII, non-ASCII escaped) and as raw UTF-8."""
    out = []
    for ascii_only in (True, False):
        try:
            out.append(json.dumps(report, ensure_ascii=ascii_only, allow_nan=False).encode())
        except (ValueError, UnicodeEncodeError):  # NaN, or a lone surrogate as raw UTF-8
            continue
    return out


def _same_answer_with_its_text(report: Any) -> None:
    for text in _texts(report):
        try:
            parsed = wire.loads(text)
        except ValueError:  # not I-JSON: refused before any check
            continue
        plain = _problems(parsed)  # jsonschema alone, and the walk
        assert _problems(parsed, fits=typed.fits, text=text) == plain, text[:300]


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        (b'{"unit": "MB"}', True),
        (b'{"unit": "M\\u0001B"}', False),  # an escaped control character
        (b'{"unit": "M\\nB"}', False),
        (b'{"unit": "\\ud800"}', False),  # a lone surrogate
        (b'{"unit": "M\x7fB"}', False),  # DEL: ASCII, and the parser lets it through
        (b'{"unit": "M\xc2\x85B"}', False),  # C1 NEL as raw UTF-8
        (b'{"unit": "\xc3\xa9"}', False),  # harmless non-ASCII: the walk decides
    ],
)
def test_a_text_is_plain_only_if_none_of_its_strings_can_hold_a_forbidden_character(
    text: bytes, plain: bool
) -> None:
    assert wire.plain_text(text) is plain


@pytest.mark.parametrize(
    ("where", "value"),
    [("remote_id", "i-0\x7f"), ("remote_id", "i-0\x01"), ("az", "eu-\u0085"), ("az", "\ud800")],
)
def test_a_forbidden_character_is_refused_the_same_whichever_way_it_is_written(
    where: str, value: str
) -> None:
    report = example()
    report["instances"][0][where] = value
    assert _problems(report)  # refused, with the walk's problem
    _same_answer_with_its_text(report)


def test_a_valid_report_passes_with_its_plain_text() -> None:
    report = example()
    text = json.dumps(report).encode()
    assert wire.plain_text(text)
    assert _problems(wire.loads(text), fits=typed.fits, text=text) is None


@PROPERTY
@given(report=generated_reports() | mutated_reports())
def test_generated_and_mutated_reports_get_the_same_problems_with_their_text(
    report: Any,
) -> None:
    assume(_texts(report))
    _same_answer_with_its_text(report)

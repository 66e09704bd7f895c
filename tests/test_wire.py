"""The wire contract: the shared examples, signing and encoding, as both sides rely on them."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from azfed import wire
from azfed.errors import InputError

DATA = Path(__file__).parent / "data" / "wire"
GOOD = sorted(DATA.glob("report-*.json"))
BAD = sorted(DATA.glob("bad-*.json"))
SECRET = b"s3cret"


def _load(path: Path) -> Any:
    return json.loads(path.read_text())


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.stem)
def test_every_good_example_validates(path: Path) -> None:
    """The example reports both sides test against are valid under the contract."""
    assert wire.validate_report(_load(path)) == _load(path)


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_every_bad_example_is_refused_naming_its_key(path: Path) -> None:
    """Each invalid example is refused, and the problem names the offending key."""
    case = _load(path)
    with pytest.raises(InputError) as exc:
        wire.validate_report(case["report"])
    assert case["expect_key"] in [p.key for p in exc.value.problems]


def test_examples_cover_every_meter_with_its_ceilometer_unit() -> None:
    """report-full.json has one sample of every meter, with the unit METERS gives."""
    samples = _load(DATA / "report-full.json")["samples"]
    assert {(s["meter"], s["unit"], s["type"]) for s in samples} >= {
        (m, u, t) for m, (u, t) in wire.METERS.items()
    }


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (b'{"volume": NaN}', "NaN"),
        (b'{"volume": Infinity}', "Infinity"),
        (b'{"volume": -Infinity}', "-Infinity"),
    ],
)
def test_loads_refuses_non_json_constants(text: bytes, why: str) -> None:
    """NaN and Infinity are refused at parse time: JSON has no such numbers."""
    with pytest.raises(ValueError, match=why):
        wire.loads(text)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (b'{"seq": 1, "seq": 2}', "appears twice"),
        (b'{"a": {"b": 1, "b": 1}}', "appears twice"),
        (b'{"volume": 1' + b"0" * 20 + b"}", "21 digits"),
        (b'{"volume": 1e400}', "beyond a double"),
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
    ],
)
def test_loads_reads_i_json_only(text: bytes, why: str) -> None:
    """I-JSON (RFC 7493): one value per member name, numbers in range, and a nesting past the
    recursion limit is a ValueError like any other bad body, not a RecursionError."""
    with pytest.raises(ValueError, match=why):
        wire.loads(text)


def test_without_a_window_only_the_contract_bounds_timestamps() -> None:
    """The agent's own check has no clock: a two-year-old report passes, year 1 does not;
    the receiver's window adds both horizons, and launched_at only the future one."""
    report = _load(DATA / "report-full.json")
    wire.validate_report(report)
    report["instances"][0]["launched_at"] = "2001-01-01T00:00:00Z"
    at = wire.Window.around(1_736_942_400, max_age_s=86400, max_future_s=300)
    wire.validate_report(report, window=at)
    late = wire.Window.around(1_736_942_400 + 2 * 86400, max_age_s=86400, max_future_s=300)
    with pytest.raises(InputError) as exc:
        wire.validate_report(report, window=late)
    assert "sent_at" in {p.key for p in exc.value.problems}
    assert "instances[0].launched_at" not in {p.key for p in exc.value.problems}
    report["sent_at"] = "0001-01-01T00:00:00+01:00"
    with pytest.raises(InputError, match="before 1970"):
        wire.validate_report(report)


def test_a_timestamp_of_the_right_shape_but_impossible_date_is_refused() -> None:
    """A month 13 matches the RFC 3339 pattern but is refused by the date check."""
    report = _load(DATA / "report-empty.json")
    report["sent_at"] = "2025-13-01T00:00:00Z"
    with pytest.raises(InputError) as exc:
        wire.validate_report(report)
    assert exc.value.problems[0].key == "sent_at"


def test_sign_and_verify_agree_and_any_change_breaks_the_signature() -> None:
    """verify accepts the signature sign made and refuses it if any signed part changes."""
    sig = wire.sign(SECRET, "POST", "/v1/reports", 1700000000, b"{}")
    assert sig.startswith("v1=")
    assert wire.verify(SECRET, "POST", "/v1/reports", 1700000000, b"{}", sig)
    assert not wire.verify(b"other", "POST", "/v1/reports", 1700000000, b"{}", sig)
    assert not wire.verify(SECRET, "PUT", "/v1/reports", 1700000000, b"{}", sig)
    assert not wire.verify(SECRET, "POST", "/v1/other", 1700000000, b"{}", sig)
    assert not wire.verify(SECRET, "POST", "/v1/reports", 1700000001, b"{}", sig)
    assert not wire.verify(SECRET, "POST", "/v1/reports", 1700000000, b"{ }", sig)


@pytest.mark.parametrize("use_gzip", [False, True])
def test_encode_report_signs_the_bytes_as_sent_and_is_deterministic(use_gzip: bool) -> None:
    """The signature covers the body as sent (gzip or not); the same dict gives the same bytes."""
    report = _load(DATA / "report-full.json")
    args: dict[str, Any] = {"secret": SECRET, "agent_id": "aws-vpc-1", "seq": 42, "gzip": use_gzip}
    body, headers = wire.encode_report(report, now=1700000000.7, **args)
    again, _ = wire.encode_report(report, now=1700000999.0, **args)
    assert body == again
    assert headers["Idempotency-Key"] == "aws-vpc-1:42"
    assert headers["X-Azfed-Timestamp"] == "1700000000"
    sig = headers["X-Azfed-Signature"]
    assert wire.verify(SECRET, "POST", wire.REPORTS_PATH, 1700000000, body, sig)
    plain = gzip.decompress(body) if use_gzip else body
    assert headers.get("Content-Encoding") == ("gzip" if use_gzip else None)
    assert wire.loads(plain) == report


def test_a_retry_resends_the_same_body_signed_afresh_for_its_own_path() -> None:
    """The pusher's way: encode the body once, sign each attempt (new timestamp, same key),
    for the path it posts to; each attempt verifies, and only for its own timestamp."""
    report = _load(DATA / "report-full.json")
    body = wire.encode_body(report, agent_id="aws-vpc-1", seq=42, gzip=True)
    args: dict[str, Any] = {"agent_id": "aws-vpc-1", "seq": 42, "body": body, "gzip": True}
    first = wire.signed_headers(SECRET, now=1700000000.0, path="/azfed/v1/reports", **args)
    retry = wire.signed_headers(SECRET, now=1700003600.0, path="/azfed/v1/reports", **args)
    assert first["Idempotency-Key"] == retry["Idempotency-Key"] == "aws-vpc-1:42"
    assert first["X-Azfed-Signature"] != retry["X-Azfed-Signature"]
    for h in (first, retry):
        ts = int(h["X-Azfed-Timestamp"])
        assert wire.verify(SECRET, "POST", "/azfed/v1/reports", ts, body, h["X-Azfed-Signature"])
        assert not wire.verify(SECRET, "POST", wire.REPORTS_PATH, ts, body, h["X-Azfed-Signature"])
    assert not wire.verify(SECRET, "POST", "/azfed/v1/reports", 1700000000, body,
                           retry["X-Azfed-Signature"])  # fmt: skip


def test_encode_report_refuses_a_seq_that_disagrees_with_the_report() -> None:
    """A report dict whose seq differs from the seq argument is a caller bug, refused."""
    report = _load(DATA / "report-full.json")
    with pytest.raises(ValueError, match="seq"):
        wire.encode_report(report, secret=SECRET, agent_id="aws-vpc-1", seq=1, now=0, gzip=False)

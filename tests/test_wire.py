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


def test_examples_cover_every_meter_with_its_ceilometer_unit_and_resource_type() -> None:
    """report-full.json has one sample of every meter, with the unit, type and resource type
    METERS gives."""
    samples = _load(DATA / "report-full.json")["samples"]
    assert {(s["meter"], s["unit"], s["type"], s["resource_type"]) for s in samples} >= {
        (m, f.unit, f.type, f.resource_type) for m, f in wire.METERS.items()
    }


# gnocchi_resources.yaml (Ceilometer 27.0.0), written out here on purpose: the metrics it puts
# under ceilometer-low-rate; every other metric of ours gets its default, ceilometer-low.
LOW_RATE_IN_CEILOMETER = {
    "cpu",
    "network.incoming.bytes",
    "network.outgoing.bytes",
    "network.incoming.packets",
    "network.outgoing.packets",
    "disk.device.read.bytes",
    "disk.device.write.bytes",
    "disk.device.read.requests",
    "disk.device.write.requests",
}


def test_each_meter_has_the_archive_policy_and_unit_ceilometer_gives_it() -> None:
    assert {m for m, f in wire.METERS.items() if f.archive_policy == "ceilometer-low-rate"} == (
        LOW_RATE_IN_CEILOMETER
    )
    assert {
        f.archive_policy for m, f in wire.METERS.items() if m not in LOW_RATE_IN_CEILOMETER
    } == {"ceilometer-low"}
    assert {m: wire.METERS[m].unit for m in ("cpu", "memory", "memory.usage", "vcpus")} == {
        "cpu": "ns", "memory": "MiB", "memory.usage": "MiB", "vcpus": "vcpu"
    }  # fmt: skip


def test_resource_ids_are_the_instance_or_the_instance_and_its_device() -> None:
    """Ceilometer's instance_disk id is <instance uuid>-<disk>; vNICs follow the same form."""
    u = "6F1C7A52-3B1E-4C2A-9D1E-0A5B8E2F4C11"
    assert wire.resource_id(u) == u.lower()
    assert wire.resource_id(u, "xvda") == f"{u.lower()}-xvda"


def test_a_v1_report_converts_what_it_honestly_can_and_says_why_not_for_the_rest() -> None:
    """memory.usage carries over (the v1 agents computed MiB and labelled it MB); cpu_util,
    the instance-wide network totals and the old disk names cannot become Ceilometer's
    per-resource meters: each is counted, by instance and meter, with the reason."""
    v1 = _load(DATA / "report-v1-full.json")
    v2, unconverted = wire.upgrade_v1(v1)
    assert v2["version"] == 2
    assert {k: v for k, v in v2.items() if k != "version"} == {
        **{k: v for k, v in v1.items() if k not in ("version", "samples")},
        "samples": [{
            "instance_uuid": "6f1c7a52-3b1e-4c2a-9d1e-0a5b8e2f4c11", "resource_type": "instance",
            "meter": "memory.usage", "unit": "MiB", "type": "gauge", "volume": 412.5,
            "timestamp": "2025-01-15T09:55:00Z",
        }],
    }  # fmt: skip
    assert wire.validate_report(v2) == v2
    counts = {u.meter: u.samples for u in unconverted}
    assert counts == {
        "cpu_util": 2, "network.incoming.bytes": 1, "network.outgoing.bytes": 1,
        "disk.read.bytes": 1, "disk.write.bytes": 1, "disk.read.requests": 1,
        "disk.write.requests": 1,
    }  # fmt: skip
    cpu = next(u for u in unconverted if u.meter == "cpu_util")
    assert "cumulative CPU time" in cpu.reason
    assert "upgrade the agent" in cpu.reason


def test_a_v2_report_is_not_converted() -> None:
    report = _load(DATA / "report-full.json")
    assert wire.upgrade_v1(report) == (report, [])


def test_the_agent_sends_contract_version_2() -> None:
    report = _load(DATA / "report-full.json")
    del report["version"]
    body = wire.encode_body(report, agent_id="aws-vpc-1", seq=42, gzip=False)
    assert wire.loads(body)["version"] == wire.CONTRACT_VERSION == 2


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

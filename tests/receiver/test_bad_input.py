"""Bad input to POST /v1/reports: each kind gets the right 4xx, names the problem, and
writes nothing (no sink batch, no dedupe key, no instance state)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from azfed import wire

from tests.receiver.conftest import NOW, OTHER_SECRET, Receiver, example

Report = dict[str, Any]


@dataclass
class Case:
    status: int
    error: str
    mutate: Callable[[Report], None] = lambda r: None
    post: dict[str, Any] = field(default_factory=dict)


def _set(path: str, value: Any) -> Callable[[Report], None]:
    def mutate(r: Report) -> None:
        *parents, last = path.split(".")
        target: Any = r
        for p in parents:
            target = target[int(p)] if p.isdigit() else target[p]
        target[int(last) if last.isdigit() else last] = value

    return mutate


def _drop(path: str) -> Callable[[Report], None]:
    def mutate(r: Report) -> None:
        *parents, last = path.split(".")
        target: Any = r
        for p in parents:
            target = target[int(p)] if p.isdigit() else target[p]
        del target[last]

    return mutate


def _bomb() -> bytes:
    # 1 MiB of spaces inside valid JSON compresses to ~1 KiB; over the 256 KiB test limit.
    return gzip.compress(b'{"a": "' + b" " * (1024 * 1024) + b'"}', mtime=0)


CASES: dict[str, Case] = {
    "no_signature": Case(401, "missing_header", post={"headers": {wire.HEADER_SIGNATURE: None}}),
    "no_timestamp": Case(401, "missing_header", post={"headers": {wire.HEADER_TIMESTAMP: None}}),
    "no_agent": Case(401, "missing_header", post={"headers": {wire.HEADER_AGENT: None}}),
    "bad_signature": Case(401, "bad_signature", post={"headers": {wire.HEADER_SIGNATURE: "v1=00"}}),
    "wrong_secret": Case(401, "bad_signature", post={"secret": b"not-the-secret"}),
    # an unknown agent is answered as a bad signature: ids are not disclosed
    "unknown_agent": Case(401, "bad_signature", post={"headers": {wire.HEADER_AGENT: "nobody"}}),
    "path_traversal_agent": Case(
        401, "bad_signature", post={"headers": {wire.HEADER_AGENT: "../secrets/aws-vpc-1"}}
    ),
    "stale_timestamp": Case(401, "stale_timestamp", post={"ts": NOW - 301}),
    "future_timestamp": Case(401, "stale_timestamp", post={"ts": NOW + 301}),
    "replayed_after_window": Case(401, "stale_timestamp", post={"ts": NOW - 3600}),
    "non_numeric_timestamp": Case(
        401, "bad_timestamp", post={"headers": {wire.HEADER_TIMESTAMP: "yesterday"}}
    ),
    "no_idempotency_key": Case(400, "missing_header", post={"headers": {wire.HEADER_KEY: None}}),
    "key_not_matching_seq": Case(
        400, "identity_mismatch", post={"headers": {wire.HEADER_KEY: "aws-vpc-1:7"}}
    ),
    "signed_by_another_agent": Case(
        400,
        "identity_mismatch",
        post={"headers": {wire.HEADER_AGENT: "aws-vpc-2"}, "secret": OTHER_SECRET},
    ),
    "oversized": Case(413, "too_large", post={"body": b'{"x": "' + b"y" * 300_000 + b'"}'}),
    "gzip_bomb": Case(
        413, "too_large", post={"body": _bomb(), "headers": {"Content-Encoding": "gzip"}}
    ),
    "bad_gzip": Case(
        400, "bad_gzip", post={"body": b"\x1f\x8bnot gzip", "headers": {"Content-Encoding": "gzip"}}
    ),
    "unsupported_encoding": Case(400, "bad_encoding", post={"headers": {"Content-Encoding": "br"}}),
    "wrong_content_type": Case(
        400, "bad_content_type", post={"headers": {"Content-Type": "text/plain"}}
    ),
    "invalid_json": Case(400, "bad_json", post={"body": b'{"version": 1,'}),
    "not_utf8": Case(400, "bad_json", post={"body": b'{"agent_id": "\xff\xfe"}'}),
    "nan_volume": Case(400, "bad_json", post={"body": b'{"volume": NaN}'}),
    "top_level_array": Case(400, "bad_schema", post={"body": b"[]"}),
    "wrong_version": Case(400, "bad_schema", _set("version", 3)),
    "seq_as_string": Case(400, "bad_schema", _set("seq", "42")),
    "negative_seq": Case(400, "bad_schema", _set("seq", -1)),
    "volume_as_string": Case(400, "bad_schema", _set("samples.0.volume", "12.5")),
    "volume_as_bool": Case(400, "bad_schema", _set("samples.0.volume", True)),
    "unknown_meter": Case(400, "bad_schema", _set("samples.0.meter", "cpu_util")),
    "wrong_unit": Case(400, "bad_schema", _set("samples.0.unit", "%")),
    "device_missing": Case(400, "bad_schema", _drop("samples.1.device")),
    "wrong_resource_type": Case(400, "bad_schema", _set("samples.1.resource_type", "instance")),
    "negative_counter": Case(400, "bad_schema", _set("samples.1.volume", -5)),
    "unknown_instance": Case(
        400, "bad_schema", _set("samples.0.instance_uuid", "11111111-2222-3333-4444-555555555555")
    ),
    "missing_field": Case(400, "bad_schema", _drop("instances.0.state")),
    "extra_field": Case(400, "bad_schema", _set("instances.0.color", "blue")),
    "bad_state": Case(400, "bad_schema", _set("instances.0.state", "exploded")),
    "bad_uuid": Case(400, "bad_schema", _set("instances.0.instance_uuid", "i-0abc")),
    "impossible_date": Case(400, "bad_schema", _set("samples.0.timestamp", "2025-02-30T00:00:00Z")),
    "date_without_zone": Case(400, "bad_schema", _set("sent_at", "2025-01-15T10:00:05")),
    "huge_ip_array": Case(400, "bad_schema", _set("instances.0.ips.public", ["10.0.0.1"] * 33)),
    "duplicate_instance": Case(
        400, "bad_schema", lambda r: r["instances"].append(dict(r["instances"][0]))
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_bad_input_gets_the_right_4xx_and_writes_nothing(
    receiver: Receiver, name: str
) -> None:
    """Each kind of bad report is refused with its status and reason, and leaves no trace."""
    case = CASES[name]
    report = example()
    case.mutate(report)
    status, answer, _ = await receiver.post(report, **case.post)
    assert (status, answer.get("error")) == (case.status, case.error), answer
    assert answer["message"]
    assert await receiver.written() == (0, 0, 0)


def test_there_are_at_least_25_kinds_of_bad_input() -> None:
    """The issue asks for 25 kinds at least; this table must not shrink below that."""
    assert len(CASES) >= 25


async def test_a_schema_error_names_the_key_the_value_and_the_reason(receiver: Receiver) -> None:
    """The 400 answer lists the problems key by key, so the agent's log says what to fix."""
    report = example()
    report["samples"][0]["meter"] = "cpu_util"
    status, answer, _ = await receiver.post(report)
    assert status == 400
    problem = answer["problems"][0]
    assert problem["key"] == "samples[0].meter"
    assert problem["value"] == "cpu_util"
    assert "is not one of" in problem["reason"]


async def test_a_huge_sample_array_is_refused_by_the_schema_bound(
    make_receiver: Any,
) -> None:
    """More than MAX_SAMPLES samples is a 400 even when the body fits the size limit."""
    rcv = await make_receiver(max_body_bytes=64 * 1024 * 1024)
    report = example()
    report["samples"] = report["samples"][:1] * (wire.MAX_SAMPLES + 1)
    status, answer, _ = await rcv.post(report, gzip=True)
    assert (status, answer["error"]) == (400, "bad_schema")
    assert await rcv.written() == (0, 0, 0)
    assert json.dumps(answer).count("samples") >= 1

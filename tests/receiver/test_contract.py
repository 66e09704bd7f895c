"""A tight contract on POST /v1/reports (issue 16): signed input that once got a 500, or was
accepted though the contract never meant it, gets a clear 400 that names the key, and nothing
is written (no sink batch, no dedupe key, no instance state). Instances belong to the agent
that first reported them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azfed import wire
from azfed.cli import main
from azfed.config import parse_config
from azfed.errors import ConfigError
from azfed.receiver.app import STORE
from click.testing import CliRunner

from tests.receiver.conftest import (
    NOW,
    OTHER_AGENT,
    OTHER_SECRET,
    Receiver,
    ReceiverFactory,
    example,
)
from tests.receiver.test_bad_input import _set

Report = dict[str, Any]
DAY = 86400


def _body(report: Report) -> bytes:
    return json.dumps(report).encode()


def _replace(old: str, new: str) -> Callable[[Report], bytes]:
    """A hand-made body: the example's JSON text with `old` replaced by `new` once."""

    def make(report: Report) -> bytes:
        text = json.dumps(report)
        assert text.count(old) >= 1, old
        return text.replace(old, new, 1).encode()

    return make


def _nested(depth: int) -> Callable[[Report], bytes]:
    def make(report: Report) -> bytes:
        text = json.dumps(report)
        return (text[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}").encode()

    return make


@dataclass
class Case:
    error: str
    key: str  # the problem's key in the answer ("" for a bad_json, which has none)
    mutate: Callable[[Report], None] = lambda r: None
    body: Callable[[Report], bytes] | None = None


def _time(seconds_from_now: float) -> str:
    return wire.Window.around(NOW + seconds_from_now, 0, 0).latest.isoformat()


CASES: dict[str, Case] = {
    # once a 500: OverflowError, RecursionError, a lone surrogate failing the SQLite insert
    "volume_10_to_the_400": Case("bad_json", "", body=_replace("1048576", "1" + "0" * 400)),
    "nesting_100000_deep": Case("bad_json", "", body=_nested(100_000)),
    "nesting_past_the_bound": Case(
        "bad_schema", "x" + "[0]" * wire.MAX_DEPTH, body=_nested(wire.MAX_DEPTH + 2)
    ),
    "lone_surrogate_in_remote_id": Case(
        "bad_schema", "instances[0].remote_id", _set("instances.0.remote_id", "i-0abc\ud800")
    ),
    "lone_surrogate_in_a_member_name": Case(
        "bad_schema", "instances[0].\\udfff", _set("instances.0.\udfff", 1)
    ),
    # integers are integers, within the documented bounds
    "seq_with_a_fraction": Case("bad_schema", "seq", _set("seq", 12345.0)),
    "seq_with_an_exponent": Case("bad_schema", "seq", body=_replace('"seq": 42', '"seq": 1e18')),
    "seq_past_max_seq": Case("bad_schema", "seq", _set("seq", wire.MAX_SEQ + 1)),
    "version_with_a_fraction": Case("bad_schema", "version", _set("version", 2.0)),
    "volume_past_max_volume": Case(
        "bad_schema", "samples[1].volume", _set("samples.1.volume", 2**63)
    ),
    "float_beyond_a_double": Case("bad_json", "", body=_replace("12.5", "1e400")),
    "duplicate_member": Case("bad_json", "", body=_replace('"seq": 42', '"seq": 42, "seq": 43')),
    # ids and strings
    "uuid_with_a_trailing_newline": Case(
        "bad_schema",
        "instances[0].instance_uuid",
        _set("instances.0.instance_uuid", "6f1c7a52-3b1e-4c2a-9d1e-0a5b8e2f4c11\n"),
    ),
    "nul_in_remote_id": Case(
        "bad_schema", "instances[0].remote_id", _set("instances.0.remote_id", "i-0\x00abc")
    ),
    "newline_in_az": Case("bad_schema", "instances[0].az", _set("instances.0.az", "us-east-1a\n")),
    "c1_control_in_instance_type": Case(
        "bad_schema", "instances[0].instance_type", _set("instances.0.instance_type", "t3\x85")
    ),
    "escape_in_unit": Case("bad_schema", "samples[0].unit", _set("samples.0.unit", "%\x1b[2J")),
    "not_an_ip": Case(
        "bad_schema", "instances[0].ips.public[0]", _set("instances.0.ips.public.0", "localhost")
    ),
    "ip_with_leading_zeros": Case(
        "bad_schema", "instances[0].ips.public[0]", _set("instances.0.ips.public.0", "010.0.0.1")
    ),
    "network_not_an_ip": Case(
        "bad_schema",
        "instances[0].ips.private[0]",
        _set("instances.0.ips.private.0", "10.0.1.0/24"),
    ),
    "ipv6_with_a_zone": Case(
        "bad_schema",
        "instances[0].ips.private[0]",
        _set("instances.0.ips.private.0", "fe80::1%eth0"),
    ),
    # timestamps within the receiver's horizons (defaults: 7 days back, 300 s ahead)
    "year_1": Case("bad_schema", "sent_at", _set("sent_at", "0001-01-01T00:00:00Z")),
    "year_9999": Case(
        "bad_schema",
        "instances[0].observed_at",
        _set("instances.0.observed_at", "9999-12-31T23:59:59Z"),
    ),
    "observed_an_hour_ahead": Case(
        "bad_schema", "instances[0].observed_at", _set("instances.0.observed_at", _time(3600))
    ),
    "sample_older_than_max_age": Case(
        "bad_schema", "samples[0].timestamp", _set("samples.0.timestamp", _time(-8 * DAY))
    ),
    "launched_in_the_future": Case(
        "bad_schema", "instances[0].launched_at", _set("instances.0.launched_at", _time(3600))
    ),
    "launched_before_1970": Case(
        "bad_schema",
        "instances[0].launched_at",
        _set("instances.0.launched_at", "1969-12-31T23:59:59Z"),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_signed_input_off_the_contract_is_a_400_naming_the_key_and_writes_nothing(
    receiver: Receiver, name: str
) -> None:
    """Each case is validly signed, so only the contract can refuse it: 400, the problem's
    key in the answer, and no trace in the sink or the store."""
    case = CASES[name]
    report = example()
    case.mutate(report)
    body = case.body(report) if case.body else None
    status, answer, _ = await receiver.post(report, body=body)
    assert (status, answer.get("error")) == (400, case.error), answer
    if case.key:
        assert case.key in [p["key"] for p in answer["problems"]], answer
    assert len(json.dumps(answer)) < 4096
    assert await receiver.written() == (0, 0, 0)


async def test_an_instance_that_launched_years_ago_is_accepted(receiver: Receiver) -> None:
    """launched_at is bounded only ahead: an instance may run for years."""
    report = example()
    report["instances"][0]["launched_at"] = _time(-3 * 365 * DAY)
    status, answer, _ = await receiver.post(report)
    assert status == 200, answer


async def test_the_horizons_are_the_receivers_config(make_receiver: ReceiverFactory) -> None:
    """[receiver] max_future_s and max_age_s move the bounds: an hour ahead and eight days
    back are accepted by a receiver configured for them."""
    rcv = await make_receiver(max_future_s=7200, max_age_s=9 * DAY, dedupe_retention_s=10 * DAY)
    report = example()
    report["instances"][0]["observed_at"] = _time(3600)
    report["samples"][0]["timestamp"] = _time(-8 * DAY)
    status, answer, _ = await rcv.post(report)
    assert status == 200, answer


def test_max_age_past_the_dedupe_retention_is_refused_at_load(tmp_path: Any) -> None:
    """A report older than the receiver remembers its key could be applied twice: the config
    that allows it names the key and says what to do."""
    section = {"secrets_dir": str(tmp_path), "max_age_s": 9 * DAY, "dedupe_retention_s": 8 * DAY}
    with pytest.raises(ConfigError, match=r"max_age_s.*dedupe_retention_s"):
        parse_config({"receiver": section})


async def test_a_far_future_observation_does_not_freeze_the_cached_state(
    receiver: Receiver,
) -> None:
    """observed_at in year 9999 is refused, so the next real observation still lands."""
    uuid = example()["instances"][0]["instance_uuid"]
    assert (await receiver.post(example()))[0] == 200
    future = example()
    future["seq"] = 43
    future["instances"][0].update(state="stopped", observed_at="9999-01-01T00:00:00Z")
    assert (await receiver.post(future))[0] == 400
    later = example()
    later["seq"] = 44
    later["instances"][0].update(state="stopping", observed_at=_time(-60))
    assert (await receiver.post(later))[0] == 200
    state = await (await receiver.client.get(f"/v1/instances/{uuid}")).json()
    assert state["state"] == "stopping"


def _as_other(report: Report, seq: int = 7) -> Report:
    report.update(agent_id=OTHER_AGENT, seq=seq)
    return report


async def test_another_agent_restating_an_instance_gets_403_and_writes_nothing(
    receiver: Receiver,
) -> None:
    """The first agent to report an instance owns it: another agent's report naming it is
    refused whole (403 foreign_instance, naming the instance and its owner)."""
    assert (await receiver.post(example()))[0] == 200
    before = await receiver.written()
    status, answer, _ = await receiver.post(_as_other(example()), secret=OTHER_SECRET)
    assert (status, answer["error"]) == (403, "foreign_instance"), answer
    assert answer["problems"][0]["key"] == "instances[0].instance_uuid"
    assert "aws-vpc-1" in answer["problems"][0]["reason"]
    assert await receiver.written() == before
    assert [a["agent_id"] for a in await receiver.app[STORE].agents()] == ["aws-vpc-1"]


async def test_an_instance_its_owner_reported_terminated_passes_to_the_next_agent(
    receiver: Receiver,
) -> None:
    """The hand-over: once the owner reports the instance `terminated`, another agent may
    report it (the server now runs in its cloud), and owns it from then on."""
    report = example("report-full")
    report["instances"] = report["instances"][:1]
    report["samples"] = [
        s
        for s in report["samples"]
        if s["instance_uuid"] == report["instances"][0]["instance_uuid"]
    ]
    assert (await receiver.post(report))[0] == 200
    gone = json.loads(json.dumps(report))
    gone.update(seq=43, samples=[])
    gone["instances"][0].update(state="terminated", observed_at=_time(-30))
    assert (await receiver.post(gone))[0] == 200
    moved = _as_other(json.loads(json.dumps(report)))
    moved["instances"][0].update(remote_id="i-0moved", observed_at=_time(-10))
    status, answer, _ = await receiver.post(moved, secret=OTHER_SECRET)
    assert status == 200, answer
    uuid = report["instances"][0]["instance_uuid"]
    state = await (await receiver.client.get(f"/v1/instances/{uuid}")).json()
    assert (state["remote_id"], state["state"]) == ("i-0moved", "running")
    back = example()
    back["seq"] = 44
    status, answer, _ = await receiver.post(back)
    assert (status, answer["error"]) == (403, "foreign_instance"), answer


async def test_an_operator_releases_an_instance_whose_owner_is_gone(
    receiver: Receiver, tmp_path: Path
) -> None:
    """`azfed receiver release-instance UUID` forgets the owner (and says whom), records it in
    the audit trail, and the next agent to report the instance owns it."""
    assert (await receiver.post(example()))[0] == 200
    uuid = example()["instances"][0]["instance_uuid"]
    cfg = tmp_path / "receiver.toml"
    cfg.write_text(
        f'[receiver]\nsecrets_dir = "{tmp_path / "secrets"}"\nsinks = ["null"]\n'
        f'database_url = "sqlite:///{tmp_path / "state.db"}"\n'
    )
    args = ["receiver", "release-instance", uuid.upper(), "--config", str(cfg)]
    result = await asyncio.to_thread(CliRunner().invoke, main, args)
    assert result.exit_code == 0, result.output
    assert "aws-vpc-1" in result.output
    trail = await receiver.app[STORE].audit_trail("released")
    assert [(e["subject"], e["detail"]["agent_id"]) for e in trail] == [(uuid, "aws-vpc-1")]
    status, answer, _ = await receiver.post(_as_other(example()), secret=OTHER_SECRET)
    assert status == 403, answer  # the second instance is still aws-vpc-1's
    moved = _as_other(example())
    moved["instances"] = moved["instances"][:1]
    moved["samples"] = [s for s in moved["samples"] if s["instance_uuid"] == uuid]
    status, answer, _ = await receiver.post(moved, secret=OTHER_SECRET)
    assert status == 200, answer
    again = await asyncio.to_thread(CliRunner().invoke, main, [*args[:2], "not-a-uuid", *args[3:]])
    assert again.exit_code == 2
    assert "not an instance UUID" in again.output


def test_the_openapi_document_carries_both_contract_versions_as_wire_declares_them() -> None:
    """A report is version 2 or version 1 (oneOf: their `version` consts exclude each other),
    each exactly wire's schema; version 1's description says what becomes of its samples."""
    from azfed.receiver import openapi

    schemas = openapi.document()["components"]["schemas"]
    assert schemas["Report"] == {
        "oneOf": [
            {"$ref": "#/components/schemas/ReportV2"},
            {"$ref": "#/components/schemas/ReportV1"},
        ]
    }
    for version, name in ((2, "ReportV2"), (1, "ReportV1")):
        shipped = {k: v for k, v in schemas[name].items() if k != "description"}
        declared = {k: v for k, v in wire.SCHEMAS[version].items() if k not in ("$schema", "$id")}
        assert shipped == declared
    assert "v1_not_convertible" in schemas["ReportV1"]["description"]

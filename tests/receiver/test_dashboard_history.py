"""What the Horizon plugin's Public cloud tab and Federation panel read, kept in the receiver's
store: each instance's latest status checks (GET /v1/instances/{id}), and the scheduler
filter's decisions (GET /v1/decisions), which outlive both the filter's restarts (its state
file then starts empty) and the receiver's (a new app on the same store)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from azfed.receiver import history, openapi
from azfed.receiver.app import STORE

from tests.receiver.conftest import NOW, ReceiverFactory, example, restamp
from tests.waiting import until

UUID = "6f1c7a52-3b1e-4c2a-9d1e-0a5b8e2f4c11"  # report-full's running instance
_SCHEMAS = openapi.document()["components"]["schemas"]


def report(seq: int, checks: str | None, observed_at: str) -> dict[str, Any]:
    """report-full at `seq`, its running instance observed at `observed_at` with `checks`
    (absent from the report when None, as an agent with status checks off sends it)."""
    doc = restamp(example(), NOW)
    doc["seq"] = seq
    [inst] = [i for i in doc["instances"] if i["instance_uuid"] == UUID]
    inst["observed_at"] = observed_at
    inst.pop("status_checks", None)
    if checks is not None:
        inst["status_checks"] = checks
    return doc


async def instance(receiver: Any) -> dict[str, Any]:
    resp = await receiver.client.get(f"/v1/instances/{UUID}")
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    jsonschema.validate(body, _SCHEMAS["InstanceState"])  # what openapi.json promises
    return body


async def test_the_instance_answer_holds_its_latest_status_checks(
    make_receiver: ReceiverFactory,
) -> None:
    """The checks follow the newest observation: impaired, then ok; a replayed older report
    (initializing) changes nothing; a report without checks (not running) makes them null."""
    receiver = await make_receiver()
    steps = [
        (1, "impaired", "2025-01-15T11:00:00Z", "impaired"),
        (2, "ok", "2025-01-15T11:01:00Z", "ok"),
        (3, "initializing", "2025-01-15T10:59:00Z", "ok"),  # older: a spool replay
        (4, None, "2025-01-15T11:02:00Z", None),
    ]
    for seq, checks, observed_at, expected in steps:
        status, answer, _ = await receiver.post(report(seq, checks, observed_at))
        assert status == 200, answer
        assert (await instance(receiver))["status_checks"] == expected, seq


async def test_the_status_checks_survive_a_restart_of_the_receiver(
    make_receiver: ReceiverFactory,
) -> None:
    """They are kept in the store, not in the receiver's memory."""
    first = await make_receiver()
    status, _, _ = await first.post(report(1, "impaired", "2025-01-15T11:00:00Z"))
    assert status == 200
    await first.client.close()
    again = await make_receiver()
    assert (await instance(again))["status_checks"] == "impaired"


def decision(at: float, uuid: str, local_pct: float, az: str | None = "aws-az") -> dict[str, Any]:
    """A decision as the filter writes it in its state file's `recent` (engine._decide)."""
    return {
        "at": at,
        "instance_uuid": uuid,
        "flavor": "m1.small",
        "az": az,
        "burst": az is not None and az != "nova",
        "rule": "burst_threshold",
        "reason": "local memory above the burst threshold",
        "load": {"local": {"memory_used_pct": local_pct}, "public": {}},
    }


def write_state(path: Path, recent: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps({"history": {}, "recent": recent}))


async def decisions(receiver: Any, query: str = "limit=500") -> list[dict[str, Any]]:
    resp = await receiver.client.get(f"/v1/decisions?{query}")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["kept_s"] == history.KEEP_S
    found: list[dict[str, Any]] = body["decisions"]
    return found


async def test_decisions_outlive_the_filters_and_the_receivers_restarts(
    make_receiver: ReceiverFactory, tmp_path: Path
) -> None:
    """The receiver keeps what the filter's state file held; the filter restarts (its file now
    holds only its new decision) and the receiver restarts on the same store: the panel still
    gets every decision, newest first, each once."""
    state = tmp_path / "filter-state.json"
    before = [decision(NOW - 300 + k, f"u{k}", 70.0 + k) for k in range(3)]
    write_state(state, before)
    first = await make_receiver(policy_state_file=str(state))
    assert [d["instance_uuid"] for d in await decisions(first)] == ["u2", "u1", "u0"]
    await first.client.close()

    write_state(state, [decision(NOW - 10, "u3", 40.0, az="nova")])  # the filter restarted
    again = await make_receiver(policy_state_file=str(state))
    kept = await decisions(again)
    assert [d["instance_uuid"] for d in kept] == ["u3", "u2", "u1", "u0"]
    assert kept[1] == before[2]  # the filter's own document, whole
    assert [d["instance_uuid"] for d in await decisions(again)] == ["u3", "u2", "u1", "u0"]


async def test_decisions_older_than_the_window_are_forgotten_and_since_narrows_the_answer(
    make_receiver: ReceiverFactory, tmp_path: Path
) -> None:
    """Bounded: a decision older than KEEP_S is neither kept nor served (and one kept earlier
    is deleted from the store); `since` answers only the decisions at or after it."""
    state = tmp_path / "filter-state.json"
    write_state(
        state,
        [
            decision(NOW - history.KEEP_S - 1, "too-old", 50.0),
            decision(NOW - 3600, "hour", 60.0),
            decision(NOW - 60, "minute", 80.0),
        ],
    )
    receiver = await make_receiver(policy_state_file=str(state))
    assert [d["instance_uuid"] for d in await decisions(receiver)] == ["minute", "hour"]
    assert [d["instance_uuid"] for d in await decisions(receiver, f"since={NOW - 600}")] == [
        "minute"
    ]
    # kept earlier (say by a receiver whose clock was behind), then past the window: deleted
    store = receiver.app[STORE]
    await store.keep_decisions([decision(NOW - history.KEEP_S - 5, "stale", 1.0)], 0.0)
    await history.sync(store, state, NOW)
    assert [d["instance_uuid"] for d in await store.kept_decisions(500)] == ["minute", "hour"]


@pytest.mark.parametrize("since", ["x", "-1", "nan", "inf", ""])
async def test_a_since_that_is_not_unix_seconds_is_400(
    make_receiver: ReceiverFactory, tmp_path: Path, since: str
) -> None:
    """The answer names the parameter and the value."""
    receiver = await make_receiver(policy_state_file=str(tmp_path / "filter-state.json"))
    resp = await receiver.client.get("/v1/decisions", params={"since": since})
    body = await resp.json()
    assert (resp.status, body["error"]) == (400, "bad_since")
    assert f"not {since!r}" in body["message"]


async def test_the_receiver_keeps_the_filters_decisions_without_being_asked(
    make_receiver: ReceiverFactory, tmp_path: Path
) -> None:
    """A receiver with a state file copies its decisions into the store as it starts (and
    every SYNC_INTERVAL_S): none is lost when the filter restarts before anyone looked."""
    state = tmp_path / "filter-state.json"
    write_state(state, [decision(NOW - 5, "u0", 75.0)])
    receiver = await make_receiver(policy_state_file=str(state))
    store = receiver.app[STORE]

    async def kept() -> bool:
        return len(await store.kept_decisions(10)) == 1

    await until(kept, "the receiver's first copy of the state file's decisions")


async def test_panels_read_at_once_while_decisions_arrive_each_get_them_once(
    make_receiver: ReceiverFactory, tmp_path: Path
) -> None:
    """Eight GET /v1/decisions at once (eight panels open, beside the receiver's own copy),
    each copying the same new decisions: all answer 200 and each decision is kept once."""
    state = tmp_path / "filter-state.json"
    receiver = await make_receiver(policy_state_file=str(state))
    for step in range(3):
        write_state(
            state, [decision(NOW - 100 + 10 * step + k, f"u{step}{k}", 50.0) for k in range(5)]
        )
        answers = await asyncio.gather(
            *[receiver.client.get("/v1/decisions?limit=500") for _ in range(8)]
        )
        assert [a.status for a in answers] == [200] * 8
    kept = await decisions(receiver)
    assert sorted(d["instance_uuid"] for d in kept) == sorted(
        f"u{s}{k}" for s in range(3) for k in range(5)
    )

"""What the Horizon plugin reads beside /v1/placement: GET /v1/decisions (the scheduler filter's
last decisions, from the state file it shares with the receiver) and GET /v1/status (what
`azfed status` shows, from the receiver's own store)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.receiver.conftest import AGENT, ReceiverFactory, example, restamp
from tests.receiver.conftest import NOW as CLOCK


def decision(k: int) -> dict[str, Any]:
    return {"at": 1_796_300_000.0 + k, "instance_uuid": f"u{k}", "az": "aws-az", "rule": "r"}


async def test_decisions_are_the_filters_newest_first_up_to_the_limit(
    make_receiver: ReceiverFactory, tmp_path: Path
) -> None:
    state = tmp_path / "filter-state.json"
    state.write_text(json.dumps({"history": {}, "recent": [decision(k) for k in range(5)]}))
    receiver = await make_receiver(policy_state_file=str(state))
    resp = await receiver.client.get("/v1/decisions?limit=3")
    assert resp.status == 200
    assert [d["instance_uuid"] for d in (await resp.json())["decisions"]] == ["u4", "u3", "u2"]
    for bad in ("0", "501", "x", "-1"):
        resp = await receiver.client.get(f"/v1/decisions?limit={bad}")
        assert (resp.status, (await resp.json())["error"]) == (400, "bad_limit"), bad


async def test_decisions_before_the_first_boot_are_none_and_a_broken_file_is_503(
    make_receiver: ReceiverFactory, tmp_path: Path
) -> None:
    state = tmp_path / "filter-state.json"
    receiver = await make_receiver(policy_state_file=str(state))
    resp = await receiver.client.get("/v1/decisions")
    assert (resp.status, (await resp.json())["decisions"]) == (200, [])
    for text in ("{not json", json.dumps({"recent": "no"})):
        state.write_text(text)
        resp = await receiver.client.get("/v1/decisions")
        body = await resp.json()
        assert (resp.status, body["error"]) == (503, "state_unreadable")
        assert str(state) in body["message"]


async def test_decisions_without_a_state_file_configured_is_503(
    make_receiver: ReceiverFactory,
) -> None:
    receiver = await make_receiver()
    resp = await receiver.client.get("/v1/decisions")
    assert (resp.status, (await resp.json())["error"]) == (503, "state_not_configured")


async def test_status_shows_the_agent_that_reported_and_its_instances(
    make_receiver: ReceiverFactory,
) -> None:
    receiver = await make_receiver()
    report = restamp(example(), CLOCK)
    status, _, _ = await receiver.post(report)
    assert status == 200
    doc = await (await receiver.client.get("/v1/status")).json()
    [agent] = doc["agents"]
    assert (agent["agent_id"], agent["last_seq"]) == (AGENT, report["seq"])
    assert sum(doc["instances"].values()) == len(report["instances"])
    assert doc["orphans"] == []

"""GET /v1/spend: the spend so far against the budgets, and the gauges it sets on /metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from azfed.errors import PolicyError, Problem
from azfed.policy.budget import Spend
from azfed.receiver.app import RUNNER_KWARGS, create_app
from azfed.receiver.spend import spend_doc

from testbed.policies import make_policy
from tests.receiver.conftest import make_config

POLICY = make_policy(budgets={"spend": {"day": 10, "month": 200, "warn_at_pct": 50}})


class Answers:
    """What the receiver's count would answer, in turn (a Spend, or a PolicyError)."""

    def __init__(self) -> None:
        self.next: Spend | PolicyError = Spend(6.0, 40.0)

    async def __call__(self) -> dict[str, Any]:
        if isinstance(self.next, PolicyError):
            raise self.next
        return spend_doc(POLICY, self.next, 1_796_300_000.0)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], Answers]]:
    answers = Answers()
    app = create_app(make_config(tmp_path), spend=answers, reconcile=False)
    server = TestServer(app)
    await server.start_server(**RUNNER_KWARGS)
    c = TestClient(server)
    await c.start_server()
    yield c, answers
    await c.close()


def _gauges(text: str) -> dict[str, float]:
    return {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("azfed_receiver_budget_")
    }


async def test_spend_answers_spent_budget_left_and_sets_the_gauges(
    client: tuple[TestClient[Any, Any], Answers],
) -> None:
    c, answers = client
    resp = await c.get("/v1/spend")
    assert resp.status == 200
    doc = await resp.json()
    assert (doc["day"]["spent"], doc["day"]["left"], doc["warning"]) == (6.0, 4.0, ["day"])
    gauges = _gauges(await (await c.get("/metrics")).text())
    assert gauges == {
        'azfed_receiver_budget_spend{period="day"}': 6.0,
        'azfed_receiver_budget_spend{period="month"}': 40.0,
        'azfed_receiver_budget_left{period="day"}': 4.0,
        'azfed_receiver_budget_left{period="month"}': 160.0,
        'azfed_receiver_budget_warning{period="day"}': 1.0,
        'azfed_receiver_budget_warning{period="month"}': 0.0,
    }
    answers.next = Spend(7.0, 110.0)
    await c.get("/v1/spend")
    gauges = _gauges(await (await c.get("/metrics")).text())
    assert gauges['azfed_receiver_budget_left{period="month"}'] == 90.0
    assert gauges['azfed_receiver_budget_warning{period="month"}'] == 1.0


async def test_a_broken_policy_is_503_naming_the_key(
    client: tuple[TestClient[Any, Any], Answers],
) -> None:
    c, answers = client
    answers.next = PolicyError("p.json", [Problem("$.budgets.spend.day", -1, "minimum")])
    resp = await c.get("/v1/spend")
    assert resp.status == 503
    body = await resp.json()
    assert body["error"] == "policy_invalid"
    assert "$.budgets.spend.day" in body["message"]


async def test_without_a_policy_file_spend_is_503_policy_not_configured(tmp_path: Path) -> None:
    app = create_app(make_config(tmp_path), reconcile=False)
    server = TestServer(app)
    await server.start_server(**RUNNER_KWARGS)
    c = TestClient(server)
    await c.start_server()
    try:
        resp = await c.get("/v1/spend")
        assert resp.status == 503
        assert (await resp.json())["error"] == "policy_not_configured"
    finally:
        await c.close()

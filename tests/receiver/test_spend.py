"""GET /v1/spend: the spend so far against the budgets, and the gauges it sets on /metrics."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from azfed.errors import PolicyError, Problem
from azfed.policy.budget import Spend
from azfed.receiver.app import RUNNER_KWARGS, create_app
from azfed.receiver.spend import policy_spend, spend_doc
from structlog.testing import capture_logs

from testbed.policies import make_policy, policy_doc
from testbed.procs import free_port
from tests.receiver.conftest import make_config

BUDGETS = {"spend": {"day": 10, "month": 200, "warn_at_pct": 50}}
POLICY = make_policy(budgets=BUDGETS)
POLICY_DOC = policy_doc(budgets=BUDGETS)


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


async def test_nova_not_answering_is_503_nova_unavailable_not_500(tmp_path: Path) -> None:
    """The count asks Nova through a real openstacksdk connection; with Keystone not there
    (a closed port) the answer is a 503 the filter treats as unreadable, and the log says why."""
    import openstack

    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY_DOC))
    closed = free_port()  # nothing listens there

    def connect() -> Any:
        return openstack.connect(
            auth_url=f"http://127.0.0.1:{closed}/v3", username="u", password="p",
            project_name="p", user_domain_name="Default", project_domain_name="Default",
            api_timeout=2,
        )  # fmt: skip

    spend = policy_spend(policy, connect, time.time)
    app = create_app(make_config(tmp_path), spend=spend, reconcile=False)
    server = TestServer(app)
    await server.start_server(**RUNNER_KWARGS)
    c = TestClient(server)
    await c.start_server()
    try:
        with capture_logs() as logs:
            resp = await c.get("/v1/spend")
        assert resp.status == 503
        assert (await resp.json())["error"] == "nova_unavailable"
        assert [e["event"] for e in logs if e["event"].startswith("spend.")] == [
            "spend.nova_failed"
        ]
    finally:
        await c.close()

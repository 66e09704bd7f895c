"""GET /v1/placement answers what the next boot of a flavor would get, from the policy file
and the cloud's load, and refuses unclear questions and broken policies with a clear answer."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from aiohttp.test_utils import TestClient, TestServer
from azfed.policy.commands import explain_cloud
from azfed.policy.model import load_policy
from azfed.receiver.app import RUNNER_KWARGS, create_app
from azfed.receiver.placement import policy_placement

from testbed.openstack import OpenStackBed
from tests.receiver.conftest import make_config

EXAMPLE_POLICY = Path(__file__).resolve().parents[2] / "packaging" / "examples" / "policy.json"


def _never_connect() -> NoReturn:
    raise AssertionError("the cloud must not be asked when the question is already wrong")


async def _client(app: Any) -> AsyncIterator[TestClient[Any, Any]]:
    server = TestServer(app)
    await server.start_server(**RUNNER_KWARGS)
    client = TestClient(server)
    await client.start_server()
    yield client
    await client.close()


@pytest.fixture
async def offline(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], Path]]:
    """A receiver whose policy file the test may break; it never reaches a cloud."""
    policy = tmp_path / "policy.json"
    shutil.copyfile(EXAMPLE_POLICY, policy)
    placement = policy_placement(policy, None, _never_connect)
    app = create_app(make_config(tmp_path), placement=placement, reconcile=False)
    async for client in _client(app):
        yield client, policy


async def test_a_question_without_a_flavor_is_400(
    offline: tuple[TestClient[Any, Any], Path],
) -> None:
    client, _ = offline
    resp = await client.get("/v1/placement")
    assert resp.status == 400
    assert (await resp.json())["error"] == "flavor_required"


async def test_a_broken_policy_file_is_503_naming_the_bad_key(
    offline: tuple[TestClient[Any, Any], Path],
) -> None:
    client, policy = offline
    doc = json.loads(policy.read_text())
    doc["burst"]["memory_used_pct"] = 140
    policy.write_text(json.dumps(doc))
    resp = await client.get("/v1/placement", params={"flavor": "m1.tiny"})
    body = await resp.json()
    assert resp.status == 503
    assert body["error"] == "policy_invalid"
    assert "memory_used_pct" in body["message"]
    assert "140" in body["message"]


@pytest.fixture
async def live(openstack_bed: OpenStackBed, tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(
        make_config(tmp_path, policy_file=str(EXAMPLE_POLICY)),
        placement=policy_placement(EXAMPLE_POLICY, None, openstack_bed.connect),
        reconcile=False,
    )
    async for client in _client(app):
        yield client


async def test_placement_agrees_with_policy_explain_on_the_real_cloud(
    live: TestClient[Any, Any], openstack_bed: OpenStackBed
) -> None:
    resp = await live.get("/v1/placement", params={"flavor": "m1.small"})
    assert resp.status == 200
    answer = await resp.json()
    conn = openstack_bed.connect()
    try:
        expected = explain_cloud(load_policy(EXAMPLE_POLICY), conn, "m1.small", None)
    finally:
        conn.close()
    assert answer["next_boot"]["az"] == expected["next_boot"]["az"]
    assert answer["next_boot"]["rule"] == expected["next_boot"]["rule"]
    assert answer["flavor"] == expected["flavor"]


async def test_an_unknown_flavor_is_404(live: TestClient[Any, Any]) -> None:
    resp = await live.get("/v1/placement", params={"flavor": "no-such-flavor"})
    assert resp.status == 404
    assert "no-such-flavor" in (await resp.json())["message"]

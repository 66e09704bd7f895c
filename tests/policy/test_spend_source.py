"""Where production's spend comes from: the receiver counts it from Nova's launch and
termination times (azfed.receiver.spend), the scheduler's filter reads its GET /v1/spend over
real HTTP with a timeout, a refresh interval and the last answer kept; an unknown spend bursts
nothing."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import structlog
from azfed.policy import Flavor, Request
from azfed.policy.budget import Lifetime, Spend
from azfed.policy.engine import PolicyEngine
from azfed.policy.spend_source import ReceiverSpend
from azfed.receiver.spend import lifetimes, server_queries, spend_doc
from structlog.testing import capture_logs

from testbed.policies import Host, make_policy, policy_doc

SMALL = Flavor("small", 1, 512)
BURST_NOW = {"burst": {"memory_used_pct": 1}, "return": {"memory_used_pct": 0}}


class Receiver:
    """A real HTTP server answering GET /v1/spend with `answer` (or `status`), counting asks."""

    def __init__(self) -> None:
        self.answer: dict[str, Any] = {"day": {"spent": 1.5}, "month": {"spent": 20.0}}
        self.status, self.asked, self.delay = 200, 0, 0.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.asked += 1
                threading.Event().wait(outer.delay)
                body = json.dumps(outer.answer).encode()
                self.send_response(outer.status if self.path == "/v1/spend" else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_the_spend_is_read_then_kept_until_the_refresh_interval_has_passed(
    receiver: Receiver,
) -> None:
    source = ReceiverSpend(receiver.url, None, refresh_s=60)
    assert source.spend(1000.0) == Spend(1.5, 20.0)
    receiver.answer = {"day": {"spent": 2.0}, "month": {"spent": 21.0}}
    assert source.spend(1059.0) == Spend(1.5, 20.0)
    assert receiver.asked == 1
    assert source.spend(1060.0) == Spend(2.0, 21.0)
    assert receiver.asked == 2


@pytest.mark.parametrize(
    ("status", "answer", "delay"),
    [
        (500, {"error": "x"}, 0.0),
        (200, {"day": {}}, 0.0),
        (200, {"day": {"spent": 1}, "month": {"spent": 2}}, 0.5),  # slower than the timeout
    ],
)
def test_a_receiver_that_fails_keeps_the_last_answer_until_it_is_too_old(
    receiver: Receiver, status: int, answer: dict[str, Any], delay: float
) -> None:
    from structlog import get_logger

    source = ReceiverSpend(receiver.url, get_logger(), refresh_s=60, timeout_s=0.2, max_age_s=300)
    assert source.spend(1000.0) == Spend(1.5, 20.0)
    receiver.status, receiver.answer, receiver.delay = status, answer, delay
    with capture_logs() as logs:
        assert source.spend(1100.0) == Spend(1.5, 20.0)
        assert source.spend(1301.0) is None
    assert [e["event"] for e in logs] == ["budget.spend_unreadable"] * 2
    assert logs[0]["last_answer_age_s"] == 100.0


def test_an_unreachable_receiver_is_an_unknown_spend() -> None:
    from structlog import get_logger

    source = ReceiverSpend("http://127.0.0.1:9", get_logger(), timeout_s=0.2)
    with capture_logs() as logs:
        assert source.spend(1000.0) is None
    assert logs[0]["event"] == "budget.spend_unreadable"


# --- the engine -------------------------------------------------------------------------------


def _engine(tmp_path: Path, spend_url: str | None, **policy: Any) -> PolicyEngine:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(policy_doc(**BURST_NOW, **policy)))
    return PolicyEngine(path, spend_url=spend_url, clock=lambda: 1_796_300_000.0)


def _hosts() -> list[Host]:
    return [Host("l1", "local"), Host("p1", "aws"), Host("p2", "os")]


@pytest.mark.parametrize(
    ("day_spent", "rule", "az"),
    [(0.0, "burst_threshold_exceeded", "aws"), (6.0, "budget_exhausted", "local")],
)
def test_the_filter_decides_on_the_spend_the_receiver_answers(
    tmp_path: Path, receiver: Receiver, day_spent: float, rule: str, az: str
) -> None:
    receiver.answer = {"day": {"spent": day_spent}, "month": {"spent": day_spent}}
    engine = _engine(tmp_path, receiver.url, budgets={"spend": {"day": 6}})
    _, decision = engine.filter(_hosts(), Request(SMALL))
    assert decision is not None
    assert (decision.rule, decision.az) == (rule, az)


def test_without_a_receiver_to_ask_a_spend_budget_bursts_nothing(tmp_path: Path) -> None:
    engine = _engine(tmp_path, None, budgets={"spend": {"month": 600}})
    _, decision = engine.filter(_hosts(), Request(SMALL))
    assert decision is not None
    assert (decision.rule, decision.az) == ("budget_exhausted", "local")
    assert "spend unknown" in decision.reason


def test_a_policy_without_a_spend_budget_never_asks_the_receiver(
    tmp_path: Path, receiver: Receiver
) -> None:
    engine = _engine(tmp_path, receiver.url, budgets={"caps": {"instances": 5}})
    _, decision = engine.filter(_hosts(), Request(SMALL))
    assert decision is not None
    assert decision.az == "aws"
    assert receiver.asked == 0


# --- the receiver's count, from Nova's records ------------------------------------------------


def server(az: str, flavor: str, launched: str | None, terminated: str | None = None) -> Any:
    """The fields of an openstacksdk Server the count reads (OS-SRV-USG times, no offset)."""
    return SimpleNamespace(
        availability_zone=az,
        flavor={"original_name": flavor, "vcpus": 1},
        launched_at=launched,
        terminated_at=terminated,
    )


def test_lifetimes_are_nova_launch_to_termination_in_the_public_azs_only() -> None:
    servers = [
        server("aws", "small", "2026-12-03T01:00:00.000000", "2026-12-03T02:30:00.000000"),
        server("os", "big", "2026-12-02T23:00:00.000000"),
        server("local", "small", "2026-12-03T01:00:00.000000"),
        server("aws", "small", None),  # never launched: building, or failed
    ]
    lives = lifetimes(servers, {"aws", "os"})
    assert lives == [
        Lifetime("aws", "small", 1796259600.0, 1796265000.0),
        Lifetime("os", "big", 1796252400.0, None),
    ]


def test_the_spend_answer_gives_spent_budget_left_and_the_warning() -> None:
    policy = make_policy(budgets={"spend": {"day": 10, "warn_at_pct": 50}})
    doc = spend_doc(policy, Spend(day=6.0, month=40.0), 1_796_300_000.0)
    assert doc["day"] == {"spent": 6.0, "budget": 10, "left": 4.0, "since": 1796256000.0}
    assert doc["month"]["left"] is None
    assert doc["warning"] == ["day"]


def test_the_server_listings_are_queries_openstacksdk_knows() -> None:
    """openstacksdk refuses an unknown filter (InvalidResourceQuery) only when it lists: hold
    the two listings to its own Server query mapping here, where no cloud is needed."""
    from openstack.compute.v2.server import Server

    alive, deleted = server_queries(1_796_083_200.0)
    for query in (alive, deleted):
        params = {k: v for k, v in query.items() if k != "details"}
        assert Server._query_mapping._validate(params, Server.base_path) == params
    assert Server._query_mapping._transpose(deleted, Server) == {
        "all_tenants": True,
        "deleted": True,
        "changes-since": "2026-12-01T00:00:00+00:00",
    }


def test_the_warning_level_is_logged_once_when_reached_and_once_when_cleared(
    receiver: Receiver,
) -> None:
    """budget.warning when the receiver first says a period is at its warning level (with the
    numbers), not again while it stays there, and budget.warning_cleared when it is not."""
    source = ReceiverSpend(receiver.url, structlog.get_logger(), refresh_s=0)
    at_warning = {
        "day": {"spent": 85.0, "budget": 100.0, "left": 15.0},
        "month": {"spent": 85.0, "budget": 3000.0, "left": 2915.0},
        "warn_at_pct": 80,
        "warning": ["day"],
    }
    with capture_logs() as logs:
        source.spend(1.0)  # not yet at the warning level
        receiver.answer = at_warning
        source.spend(2.0)
        source.spend(3.0)
        receiver.answer = {**at_warning, "day": {"spent": 0.0}, "warning": []}
        source.spend(4.0)
    events = [(e["event"], e.get("period"), e.get("spent")) for e in logs]
    assert events == [("budget.warning", "day", 85.0), ("budget.warning_cleared", "day", None)]

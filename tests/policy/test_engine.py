"""PolicyEngine, the Nova-free core of FederationFilter, over host-state stand-ins: the load it
reads, the hosts it keeps, the policy reload, the state file and the canonical log line."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from azfed.policy import Flavor, Request, load_from_hosts
from azfed.policy import engine as engine_module
from azfed.policy.engine import PolicyEngine, az_weight
from structlog.testing import capture_logs

from testbed.policies import Host, make_policy, policy_doc

SMALL = Flavor("small", 1, 512)
# reserved memory alone (6.25%) is over this burst threshold
BURST_NOW = {"burst": {"memory_used_pct": 1}, "return": {"memory_used_pct": 0}}


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def write(path: Path, **changes: object) -> Path:
    path.write_text(json.dumps(policy_doc(**changes)))
    return path


@pytest.fixture
def hosts() -> list[Host]:
    return [Host("l1", "local"), Host("l2", "local"), Host("p1", "aws"), Host("x", "other")]


def test_load_from_host_states_counts_reserved_as_used_and_applies_ratios(
    hosts: list[Host],
) -> None:
    hosts[0].boot("a", 1024)
    load = load_from_hosts(hosts, make_policy())
    assert load.local.hosts == 2
    assert load.local.ram_used_mb == 512 * 2 + 1024
    assert load.local.ram_capacity_mb == 8192 * 2
    assert load.local.vcpus_capacity == 80
    assert load.local.largest_free_ram_mb == 8192 - 512
    assert load.local.memory_used_pct == round(100 * 2048 / 16384, 3)
    assert load.public["aws"].hosts == 1
    assert load.public["os"].hosts == 0


def test_public_cost_uses_known_prices_and_the_dearest_for_unknown_instances(
    hosts: list[Host],
) -> None:
    hosts[2].boot("known")
    hosts[2].boot("unknown")
    hosts[2].num_instances += 1  # scheduled, not yet reported by the compute
    load = load_from_hosts(hosts, make_policy(), {"known": 0.1})
    assert load.public["aws"].hourly_cost == pytest.approx(0.1 + 0.4 + 0.4)


def test_the_filter_keeps_local_hosts_at_low_load(tmp_path: Path, hosts: list[Host]) -> None:
    engine = PolicyEngine(write(tmp_path / "p.json"))
    kept, decision = engine.filter(hosts, Request(SMALL))
    assert [h.host for h in kept] == ["l1", "l2"]
    assert decision is not None
    assert decision.rule == "below_burst_threshold"


def test_the_filter_keeps_only_public_hosts_once_the_threshold_is_reached(
    tmp_path: Path, hosts: list[Host]
) -> None:
    engine = PolicyEngine(
        write(tmp_path / "p.json", burst={"instances": 2}, **{"return": {"instances": 0}})
    )
    hosts[0].boot("a")
    hosts[1].boot("b")
    kept, decision = engine.filter(hosts, Request(SMALL, instance_uuid="c"))
    assert [h.host for h in kept] == ["p1"]
    assert decision is not None
    assert (decision.rule, decision.az) == (
        "burst_threshold_exceeded",
        "aws",
    )
    assert engine.history.mode == "burst"


def test_a_missing_local_az_among_the_candidates_bursts(tmp_path: Path, hosts: list[Host]) -> None:
    # Placement offers no local host when none has room: that alone must burst
    engine = PolicyEngine(write(tmp_path / "p.json"))
    kept, decision = engine.filter(hosts[2:], Request(SMALL))
    assert [h.host for h in kept] == ["p1"]
    assert decision is not None
    assert decision.rule == "local_full"


def test_one_canonical_log_line_per_decision_with_the_numbers(
    tmp_path: Path, hosts: list[Host]
) -> None:
    engine = PolicyEngine(write(tmp_path / "p.json"))
    engine.current()
    with capture_logs() as logs:
        engine.filter(hosts, Request(SMALL, instance_uuid="u1"))
    [line] = logs
    assert line["event"] == "placement.decided"
    assert (line["instance_uuid"], line["az"], line["rule"]) == (
        "u1",
        "local",
        "below_burst_threshold",
    )
    assert line["compared"]["memory_used_pct"] == {"value": 6.25, "limit": 80.0}
    assert (line["hosts_in"], line["hosts_out"]) == (4, 2)


def test_a_changed_policy_file_is_reloaded(tmp_path: Path, hosts: list[Host]) -> None:
    path = write(tmp_path / "p.json")
    engine = PolicyEngine(path)
    assert engine.filter(hosts, Request(SMALL))[1].az == "local"  # type: ignore[union-attr]
    write(path, **BURST_NOW)
    assert engine.filter(hosts, Request(SMALL))[1].az == "aws"  # type: ignore[union-attr]


def test_an_invalid_new_policy_is_refused_and_the_last_good_one_kept(
    tmp_path: Path, hosts: list[Host]
) -> None:
    path = write(tmp_path / "p.json")
    engine = PolicyEngine(path)
    good = engine.current()
    write(path, burst={"memory_used_pct": 200})
    with capture_logs() as logs:
        assert engine.current() is good
    [err] = logs
    assert err["event"] == "policy.invalid"
    assert err["log_level"] == "error"
    assert err["problems"] == [
        "$.burst.memory_used_pct = 200: maximum: 200 is greater than the maximum of 100",
        "$.return.instances = 6: no burst threshold to return from",
    ]
    assert err["action"] == "keeping the last good policy"


def test_without_any_good_policy_nothing_bursts(tmp_path: Path, hosts: list[Host]) -> None:
    engine = PolicyEngine(tmp_path / "absent.json", public_azs=["aws"])
    with capture_logs() as logs:
        kept, decision = engine.filter(hosts, Request(SMALL))
    assert decision is None
    assert [h.host for h in kept] == ["l1", "l2", "x"]
    assert [e["event"] for e in logs] == ["policy.invalid", "placement.decided"]


def test_the_mode_and_prices_survive_a_restart_through_the_state_file(
    tmp_path: Path, hosts: list[Host]
) -> None:
    policy, state, clock = (
        write(tmp_path / "p.json", **BURST_NOW),
        tmp_path / "s.json",
        Clock(),
    )
    first = PolicyEngine(policy, state_file=state, clock=clock)
    first.filter(hosts, Request(Flavor("big"), instance_uuid="u1"))
    assert first.flush(10)  # as the scheduler does when it stops (the file is written behind)
    doc = json.loads(state.read_text())
    assert doc["last_decision"]["az"] == "aws"
    assert doc["last_load"]["local"]["instances"] == 0
    second = PolicyEngine(policy, state_file=state, clock=clock)
    assert second.history == first.history
    assert second.history.mode == "burst"
    hosts[2].boot("u1", 4096, 4)
    assert load_from_hosts(hosts, make_policy(), {"u1": 0.4}).public["aws"].hourly_cost == 0.4


def test_a_recorded_capacity_failure_sends_the_next_burst_to_the_fallback_az(
    tmp_path: Path, hosts: list[Host]
) -> None:
    hosts.append(Host("p2", "os"))
    engine = PolicyEngine(
        write(tmp_path / "p.json", **BURST_NOW),
        clock=Clock(),
    )
    engine.record_failure("aws", "small", reason="AWS has no capacity for t3.micro")
    kept, decision = engine.filter(hosts, Request(SMALL))
    assert [h.host for h in kept] == ["p2"]
    assert decision is not None
    assert decision.skipped[0][0] == "aws"
    assert decision.skipped[0][1].endswith("AWS has no capacity for t3.micro")


def test_a_launch_in_the_az_ends_its_failure_streak(tmp_path: Path, hosts: list[Host]) -> None:
    """record_success: the AZ is tried again at once, and a next failure starts over at the
    initial back-off."""
    engine = PolicyEngine(write(tmp_path / "p.json", **BURST_NOW), clock=Clock())
    engine.record_failure("aws", "small")
    engine.record_success("aws", "small")
    kept, _ = engine.filter(hosts, Request(SMALL))
    assert [h.host for h in kept] == ["p1"]
    assert engine.history.failures == {}


def test_with_fallback_the_filter_keeps_the_fallback_azs_hosts_in_the_policys_order(
    tmp_path: Path, hosts: list[Host]
) -> None:
    """The chosen AZ's hosts, then the next public AZ's, then local (the policy falls back
    there); the weigher's weights follow that order; other AZs' hosts are dropped."""
    hosts.append(Host("p2", "os"))
    engine = PolicyEngine(write(tmp_path / "p.json", **BURST_NOW), clock=Clock())
    request = Request(SMALL, instance_uuid="u1")
    kept, decision = engine.filter(hosts, request, with_fallback=True)
    assert decision is not None
    assert (decision.az, decision.fallback) == ("aws", ("os", "local"))
    assert sorted(h.host for h in kept) == ["l1", "l2", "p1", "p2"]
    assert engine.order("u1") == ("aws", "os", "local")
    weights = {h.host: az_weight(engine.order("u1"), h.az) for h in hosts}
    assert weights == {"p1": 3.0, "p2": 2.0, "l1": 1.0, "l2": 1.0, "x": 0.0}
    # without the weigher, only the chosen AZ's hosts, as before
    alone, _ = engine.filter(hosts, Request(SMALL, instance_uuid="u2"))
    assert [h.host for h in alone] == ["p1"]
    assert engine.order("u2") == ()


def test_a_backed_off_az_is_not_kept_as_an_alternate_either(
    tmp_path: Path, hosts: list[Host]
) -> None:
    hosts.append(Host("p2", "os"))
    engine = PolicyEngine(
        write(tmp_path / "p.json", **BURST_NOW, fallback={"when_public_unavailable": "reject"}),
        clock=Clock(),
    )
    engine.record_failure("os", "small")
    kept, decision = engine.filter(hosts, Request(SMALL, instance_uuid="u1"), with_fallback=True)
    assert decision is not None
    assert (decision.az, decision.fallback) == ("aws", ())
    assert [h.host for h in kept] == ["p1"]


def test_the_failure_streak_survives_a_restart_through_the_state_file(
    tmp_path: Path, hosts: list[Host]
) -> None:
    state, clock = tmp_path / "state.json", Clock()
    first = PolicyEngine(write(tmp_path / "p.json", **BURST_NOW), state_file=state, clock=clock)
    first.record_failure("aws", "small", reason="no room")
    assert first.flush(5)
    second = PolicyEngine(tmp_path / "p.json", state_file=state, clock=clock)
    assert second.history.failures == first.history.failures
    _, decision = second.filter(hosts, Request(SMALL))
    assert decision is not None
    assert (decision.az, decision.skipped[0][0]) == ("os", "aws")


def test_an_explicit_az_request_is_judged_on_the_local_load_last_seen(
    tmp_path: Path, hosts: list[Host]
) -> None:
    # Placement offers only the asked AZ's hosts: the local AZ is unseen, not full
    clock = Clock()
    engine = PolicyEngine(write(tmp_path / "p.json", explicit_az="apply-policy"), clock=clock)
    engine.filter(hosts, Request(SMALL))
    kept, decision = engine.filter(hosts[2:3], Request(SMALL, requested_az="aws"))
    assert kept == []
    assert decision is not None
    assert decision.rule == "explicit_az_against_policy"
    clock.t += 121  # too old to stand in: judged as unseen (no local host to place on)
    _, decision = engine.filter(hosts[2:3], Request(SMALL, requested_az="aws"))
    assert decision is not None
    assert decision.rule == "local_full"


def test_the_local_load_last_seen_survives_a_restart(tmp_path: Path, hosts: list[Host]) -> None:
    clock, state = Clock(), tmp_path / "s.json"
    policy = write(tmp_path / "p.json", explicit_az="apply-policy")
    first = PolicyEngine(policy, state_file=state, clock=clock)
    first.filter(hosts, Request(SMALL))
    assert first.flush(10)
    restarted = PolicyEngine(policy, state_file=state, clock=clock)
    _, decision = restarted.filter(hosts[2:3], Request(SMALL, requested_az="aws"))
    assert decision is not None
    assert decision.rule == "explicit_az_against_policy"


def test_the_filter_does_not_wait_for_its_state_file_and_the_newest_state_is_written(
    tmp_path: Path, hosts: list[Host], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A durable write takes milliseconds the scheduler should not spend: with the disk held
    up, filter() still answers, and once the disk answers the file holds the newest
    decision (the states in between are superseded, not queued)."""
    held, entered = threading.Event(), threading.Event()
    real = engine_module.write_atomic

    def slow_disk(path: Path, data: bytes) -> None:
        entered.set()
        assert held.wait(10), "the test never released the disk"
        real(path, data)

    monkeypatch.setattr(engine_module, "write_atomic", slow_disk)
    state = tmp_path / "s.json"
    engine = PolicyEngine(write(tmp_path / "p.json", **BURST_NOW), state_file=state)
    engine.filter(hosts, Request(SMALL, instance_uuid="u1"))
    assert entered.wait(10)  # the first write is under way, held
    for k in range(2, 6):  # every one of these answers while the disk is held
        _, decision = engine.filter(hosts, Request(SMALL, instance_uuid=f"u{k}"))
        assert decision is not None
    assert not engine.flush(0.2)  # the disk is still held
    held.set()
    assert engine.flush(10)
    doc = json.loads(state.read_text())
    assert doc["recent"][-1]["instance_uuid"] == "u5"


def test_a_failed_state_write_is_logged_and_the_next_state_is_written_still(
    tmp_path: Path, hosts: list[Host], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever one write raises, the writer thread goes on: the next decision reaches the
    file (a dead writer would keep the file at its old state for good, silently)."""
    real, failures = engine_module.write_atomic, [OSError("disk full"), ValueError("a bug")]

    def failing_then_real(path: Path, data: bytes) -> None:
        if failures:
            raise failures.pop(0)
        real(path, data)

    monkeypatch.setattr(engine_module, "write_atomic", failing_then_real)
    state = tmp_path / "s.json"
    engine = PolicyEngine(write(tmp_path / "p.json", **BURST_NOW), state_file=state)
    with capture_logs() as logs:
        for k in (1, 2, 3):
            engine.filter(hosts, Request(SMALL, instance_uuid=f"u{k}"))
            assert engine.flush(10)
    assert [e["event"] for e in logs if e["event"].startswith("filter_state")] == [
        "filter_state.unwritable",
        "filter_state.unwritable",
    ]
    assert json.loads(state.read_text())["recent"][-1]["instance_uuid"] == "u3"


def test_the_recent_decisions_survive_a_restart(tmp_path: Path, hosts: list[Host]) -> None:
    """The decisions the dashboard lists are not forgotten when nova-scheduler restarts: the
    restarted filter's state file lists the earlier ones before its own."""
    clock, state = Clock(), tmp_path / "s.json"
    policy = write(tmp_path / "p.json", **BURST_NOW)
    first = PolicyEngine(policy, state_file=state, clock=clock)
    first.filter(hosts, Request(SMALL, instance_uuid="u1"))
    assert first.flush(10)
    restarted = PolicyEngine(policy, state_file=state, clock=clock)
    restarted.filter(hosts, Request(SMALL, instance_uuid="u2"))
    assert restarted.flush(10)
    recent = json.loads(state.read_text())["recent"]
    assert [d["instance_uuid"] for d in recent] == ["u1", "u2"]

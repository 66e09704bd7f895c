"""decide(): one table row per rule, plus the fallback order, caps and determinism."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest
from azfed.policy import Flavor, History, Load, PublicUsage, Request, decide
from azfed.policy.budget import Spend
from azfed.policy.decide import RULES, Streak

from testbed.policies import load, local, make_policy

SMALL = Flavor("small", vcpus=1, ram_mb=512)
NOW = 10_000.0
BURSTING_LONG = History(mode="burst", mode_since=NOW - 1000)
BURSTING_NEW = History(mode="burst", mode_since=NOW - 10)
RETURNED_NEW = History(mode="local", mode_since=NOW - 10)
# projects p-* may burst, except the lab
PROJECTS = {"projects": {"allow": ["p-*"], "deny": ["p-lab"]}}
# 24 a day (NOW is 02:46:40 UTC on 1 January 1970: 21.2 h left in the day)
DAY_BUDGET = {"budgets": {"spend": {"day": 24}}}


@dataclass(frozen=True)
class Row:
    name: str
    rule: str
    az: str | None
    load: Load = field(default_factory=load)
    history: History = field(default_factory=History)
    request: Request = field(default_factory=lambda: Request(SMALL))
    policy: dict[str, Any] = field(default_factory=dict)
    mode: str | None = None
    spend: Spend = field(default_factory=Spend)


ROWS = [
    Row("low load stays local", "below_burst_threshold", "local", mode="local"),
    Row(
        "memory at the threshold bursts",
        "burst_threshold_exceeded",
        "aws",
        load(80.0),
        mode="burst",
    ),
    Row(
        "instance count at the threshold bursts", "burst_threshold_exceeded", "aws", load(10.0, 10)
    ),
    Row("just below both thresholds stays local", "below_burst_threshold", "local", load(79.9, 9)),
    Row(
        "burst again only after the burst cooldown",
        "burst_cooldown",
        "local",
        load(90.0),
        RETURNED_NEW,
    ),
    Row(
        "bursting holds while above return threshold",
        "above_return_threshold",
        "aws",
        load(70.0),
        BURSTING_LONG,
    ),
    Row(
        "bursting holds during the return cooldown",
        "return_cooldown",
        "aws",
        load(10.0),
        BURSTING_NEW,
    ),
    Row(
        "load at the return threshold returns",
        "below_return_threshold",
        "local",
        load(60.0, 6),
        BURSTING_LONG,
        mode="local",
    ),
    Row(
        "a full local AZ bursts whatever the thresholds",
        "local_full",
        "aws",
        Load(local(10.0, free_mb=100.0)),
        mode="local",
    ),
    Row(
        "a denied flavor stays local under load",
        "flavor_denied",
        "local",
        load(99.0),
        request=Request(Flavor("x.gpu")),
    ),
    Row(
        "a flavor outside the allow list stays local",
        "flavor_denied",
        "local",
        load(99.0),
        request=Request(Flavor("tiny")),
    ),
    Row(
        "all public AZs capped falls back local",
        "public_unavailable_local",
        "local",
        load(90.0, 1, aws=PublicUsage("aws", instances=10), os=PublicUsage("os", instances=5)),
    ),
    Row(
        "all public AZs capped and reject configured refuses",
        "public_unavailable_reject",
        None,
        load(90.0, 1, aws=PublicUsage("aws", instances=10), os=PublicUsage("os", instances=5)),
        policy={"fallback": {"when_public_unavailable": "reject"}},
    ),
    Row(
        "an explicit public AZ is honoured at low load",
        "explicit_az_honoured",
        "os",
        request=Request(SMALL, "os"),
    ),
    Row(
        "an explicit local AZ is honoured under load",
        "explicit_az_honoured",
        "local",
        load(95.0),
        request=Request(SMALL, "local"),
    ),
    Row(
        "an explicit public AZ at its cap is refused",
        "explicit_az_refused",
        None,
        load(10.0, 1, os=PublicUsage("os", instances=5)),
        request=Request(SMALL, "os"),
    ),
    Row(
        "an explicit public AZ with a denied flavor is refused",
        "explicit_az_refused",
        None,
        request=Request(Flavor("x.gpu"), "aws"),
    ),
    Row(
        "apply-policy refuses an explicit AZ the policy would not choose",
        "explicit_az_against_policy",
        None,
        request=Request(SMALL, "aws"),
        policy={"explicit_az": "apply-policy"},
    ),
    Row(
        "apply-policy accepts an explicit AZ the policy chooses",
        "burst_threshold_exceeded",
        "aws",
        load(85.0),
        request=Request(SMALL, "aws"),
        policy={"explicit_az": "apply-policy"},
    ),
    Row(
        "an AZ the policy does not know passes through",
        "explicit_az_unknown",
        "elsewhere",
        request=Request(SMALL, "elsewhere"),
    ),
    Row(
        "a denied project stays local under load",
        "project_denied",
        "local",
        load(99.0),
        request=Request(SMALL, project_id="p-lab"),
        policy=PROJECTS,
    ),
    Row(
        "a project outside the allow list stays local under load",
        "project_denied",
        "local",
        load(99.0),
        request=Request(SMALL, project_id="q-1"),
        policy=PROJECTS,
    ),
    Row(
        "an allowed project bursts under load",
        "burst_threshold_exceeded",
        "aws",
        load(90.0),
        request=Request(SMALL, project_id="p-1"),
        policy=PROJECTS,
    ),
    Row(
        "the hint never stays local under load",
        "burst_hint_never",
        "local",
        load(99.0),
        request=Request(SMALL, burst_hint="never"),
    ),
    Row(
        "the hint never leaves the mode as it was",
        "burst_hint_never",
        "local",
        load(99.0),
        BURSTING_LONG,
        request=Request(SMALL, burst_hint="never"),
        mode="burst",
    ),
    Row(
        "the hint prefer bursts at low load without switching the mode",
        "burst_hint_prefer",
        "aws",
        request=Request(SMALL, burst_hint="prefer"),
        mode="local",
    ),
    Row(
        "the hint prefer bursts during the burst cooldown",
        "burst_hint_prefer",
        "aws",
        load(90.0),
        RETURNED_NEW,
        request=Request(SMALL, burst_hint="prefer"),
        mode="local",
    ),
    Row(
        "the hint prefer stays local when every public AZ is at a cap",
        "below_burst_threshold",
        "local",
        load(10.0, 1, aws=PublicUsage("aws", instances=10), os=PublicUsage("os", instances=5)),
        request=Request(SMALL, burst_hint="prefer"),
        policy={"fallback": {"when_public_unavailable": "reject"}},
    ),
    Row(
        "the hint prefer does not pass the flavor deny list",
        "flavor_denied",
        "local",
        request=Request(Flavor("x.gpu"), burst_hint="prefer"),
    ),
    Row(
        "the hint prefer does not pass a denied project",
        "project_denied",
        "local",
        request=Request(SMALL, project_id="p-lab", burst_hint="prefer"),
        policy=PROJECTS,
    ),
    Row(
        "the hint allowed is the default",
        "below_burst_threshold",
        "local",
        request=Request(SMALL, burst_hint="allowed"),
    ),
    Row(
        "a hint value decide does not know is refused",
        "burst_hint_invalid",
        None,
        request=Request(SMALL, burst_hint="sometimes"),
    ),
    Row(
        "an explicit public AZ with the hint never is refused",
        "explicit_az_refused",
        None,
        request=Request(SMALL, "aws", burst_hint="never"),
    ),
    Row(
        "a used-up day budget bursts nothing: local",
        "budget_exhausted",
        "local",
        load(90.0),
        policy=DAY_BUDGET,
        spend=Spend(day=24.0, month=24.0),
        mode="burst",
    ),
    Row(
        "a used-up day budget refuses a boot local cannot take",
        "budget_exhausted",
        None,
        Load(local(90.0, free_mb=100.0)),
        request=Request(Flavor("big", 4, 4096)),
        policy=DAY_BUDGET,
        spend=Spend(day=30.0, month=30.0),
    ),
    Row(
        "a day budget the running instances will use up by midnight bursts nothing",
        "budget_exhausted",
        "local",
        load(90.0, 1, aws=PublicUsage("aws", instances=2, hourly_cost=1.2)),
        policy=DAY_BUDGET,
        spend=Spend(day=0.0),
    ),
    Row(
        "an explicit public AZ past the day budget is refused",
        "explicit_az_refused",
        None,
        request=Request(SMALL, "aws"),
        policy=DAY_BUDGET,
        spend=Spend(day=24.0),
    ),
    Row(
        "an explicit public AZ for a denied project is refused",
        "explicit_az_refused",
        None,
        request=Request(SMALL, "aws", project_id="p-lab"),
        policy=PROJECTS,
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_decide_fires_the_rule_of_each_row(row: Row) -> None:
    policy = make_policy(**row.policy)
    decision = decide(row.request, row.load, policy, row.history, NOW, row.spend)
    assert (decision.rule, decision.az) == (row.rule, row.az), decision.reason
    assert decision.burst == (row.az in ("aws", "os"))
    if row.mode:
        assert decision.mode == row.mode


def test_the_table_covers_every_rule_decide_has() -> None:
    assert {r.rule for r in ROWS} == set(RULES)


def test_a_decision_carries_the_numbers_it_compared() -> None:
    d = decide(Request(SMALL), load(85.0, 3), make_policy(), History(), NOW)
    assert d.compared["memory_used_pct"] == {"value": 85.0, "limit": 80.0}
    assert d.compared["instances"] == {"value": 3.0, "limit": 10.0}
    assert d.reason == "memory_used_pct 85 >= 80"


def test_a_capped_public_az_falls_back_to_the_next_by_priority_and_says_why() -> None:
    full = load(90.0, 1, aws=PublicUsage("aws", instances=10))
    d = decide(Request(SMALL), full, make_policy(), History(), NOW)
    assert d.az == "os"
    assert d.skipped == (("aws", "cap instances: 11 would exceed 10"),)


def test_a_public_az_that_just_failed_is_skipped_until_its_backoff_ends() -> None:
    policy = make_policy()  # capacity_backoff: initial 120 s
    failed = History().with_failure("aws", "small", NOW - 30, policy.capacity_backoff, "no room")
    d = decide(Request(SMALL), load(90.0), policy, failed, NOW)
    assert d.az == "os"
    assert d.skipped[0][0] == "aws"
    assert "capacity failure of small 30s ago" in d.skipped[0][1]
    assert d.skipped[0][1].endswith("90s left): no room")
    later = History().with_failure("aws", "small", NOW - 121, policy.capacity_backoff)
    assert decide(Request(SMALL), load(90.0), policy, later, NOW).az == "aws"


def test_a_failure_of_one_flavor_leaves_the_az_open_to_the_others() -> None:
    policy = make_policy()
    failed = History().with_failure("aws", "big", NOW - 30, policy.capacity_backoff)
    assert decide(Request(SMALL), load(90.0), policy, failed, NOW).az == "aws"
    big = Flavor("big", 4, 4096)
    assert decide(Request(big), load(90.0), policy, failed, NOW).az == "os"


@pytest.mark.parametrize(
    ("usage", "flavor", "why"),
    [
        (PublicUsage("aws", vcpus=20), SMALL, "cap vcpus: 21 would exceed 20"),
        (PublicUsage("aws", ram_mb=20480), SMALL, "cap ram_mb: 20992 would exceed 20480"),
        (PublicUsage("aws", hourly_cost=0.95), SMALL, "cap hourly_cost: 1.0500 would exceed 1"),
        (PublicUsage("aws"), Flavor("unpriced"), "cap hourly_cost: no price for flavor 'unpriced'"),
    ],
)
def test_every_cap_is_checked_with_the_request_added(
    usage: PublicUsage, flavor: Flavor, why: str
) -> None:
    policy = make_policy(flavors={"allow": ["*"]})
    d = decide(Request(flavor), load(90.0, aws=usage), policy, History(), NOW)
    assert d.skipped[0] == ("aws", why)


def test_an_exact_fit_under_the_cost_cap_is_allowed() -> None:
    d = decide(
        Request(SMALL),
        load(90.0, aws=PublicUsage("aws", hourly_cost=0.9)),
        make_policy(),
        History(),
        NOW,
    )
    assert d.az == "aws"


def test_history_changes_mode_only_when_the_decision_does() -> None:
    h = History()
    burst = decide(Request(SMALL), load(90.0), make_policy(), h, NOW)
    h2 = h.after(burst, NOW)
    assert (h2.mode, h2.mode_since) == ("burst", NOW)
    again = decide(Request(SMALL), load(90.0), make_policy(), h2, NOW + 5)
    assert h2.after(again, NOW + 5) is h2


def test_history_round_trips_through_its_dict_form() -> None:
    h = History(mode="burst", mode_since=5.0, failures={("aws", "small"): Streak(2, 3.0, "x")})
    assert History.from_dict(h.as_dict()) == h
    # a state file written before failures were kept per flavor: the AZ, for any flavor
    old = History.from_dict({"mode": "local", "mode_since": None, "failures": {"aws": 3.0}})
    assert old.failures == {("aws", "*"): Streak(1, 3.0)}
    assert History.from_dict(History().as_dict()).mode_since == -math.inf


def test_decide_is_deterministic() -> None:
    args = (Request(SMALL), load(85.0, 4), make_policy(), BURSTING_NEW, NOW)
    assert decide(*args) == decide(*args)


def test_a_preference_that_finds_no_room_says_which_azs_it_passed_over() -> None:
    full = load(10.0, 1, aws=PublicUsage("aws", instances=10), os=PublicUsage("os", instances=5))
    d = decide(Request(SMALL, burst_hint="prefer"), full, make_policy(), History(), NOW)
    assert (d.az, d.rule) == ("local", "below_burst_threshold")
    assert d.skipped == (
        ("aws", "cap instances: 11 would exceed 10"),
        ("os", "cap instances: 6 would exceed 5"),
    )


def test_the_reasons_name_the_project_and_the_hint() -> None:
    policy = make_policy(**PROJECTS)
    denied = decide(Request(SMALL, project_id="p-lab"), load(99.0), policy, History(), NOW)
    assert denied.reason == "project 'p-lab' matches deny pattern 'p-lab'"
    never = decide(
        Request(SMALL, project_id="p-1", burst_hint="never"), load(99.0), policy, History(), NOW
    )
    assert never.reason == "scheduler hint azfed:burst=never"
    prefer = decide(
        Request(SMALL, project_id="p-1", burst_hint="prefer"), load(), policy, History(), NOW
    )
    assert prefer.reason == (
        "scheduler hint azfed:burst=prefer "
        "(below_burst_threshold: every metric below its burst threshold)"
    )
    bad = decide(Request(SMALL, burst_hint="yes"), load(), policy, History(), NOW)
    assert bad.reason == "scheduler hint azfed:burst='yes' is not one of never, allowed, prefer"


def test_the_docs_list_every_rule_decide_has() -> None:
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "policy.md").read_text()
    section = docs.split("## Rules", 1)[1].split("\n## ", 1)[0]
    assert [r for r in RULES if f"`{r}`" not in section] == []

"""Budgets across all public AZs (issue 15, item 2): caps on the public AZs together, spend per
day and month from instance lifetimes, and decide never letting either be passed, whatever the
hint or the requested AZ."""

from __future__ import annotations

import heapq
import math
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from azfed.errors import PolicyError
from azfed.policy import Flavor, History, Load, PublicUsage, Request, decide, parse_policy
from azfed.policy.budget import Ledger, Lifetime, Spend, period_bounds, spend_at, warning
from azfed.policy.simulate import read_trace, run
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.policies import load, local, make_policy, policy_doc

SMALL = Flavor("small", 1, 512)
BIG = Flavor("big", 4, 1024)
PARIS = ZoneInfo("Europe/Paris")
H = 3600.0


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


# --- periods and spend -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "day", "month"),
    [
        (
            "2026-12-03T13:00:00+00:00",
            ("2026-12-03T00:00:00+01:00", "2026-12-04T00:00:00+01:00"),
            ("2026-12-01T00:00:00+01:00", "2027-01-01T00:00:00+01:00"),
        ),
        (  # 23:30 UTC is already the next day in Paris
            "2026-12-31T23:30:00+00:00",
            ("2027-01-01T00:00:00+01:00", "2027-01-02T00:00:00+01:00"),
            ("2027-01-01T00:00:00+01:00", "2027-02-01T00:00:00+01:00"),
        ),
        (  # the spring-forward day has 23 hours
            "2026-03-29T12:00:00+02:00",
            ("2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"),
            ("2026-03-01T00:00:00+01:00", "2026-04-01T00:00:00+02:00"),
        ),
    ],
)
def test_days_and_months_follow_the_budgets_time_zone(
    now: str, day: tuple[str, str], month: tuple[str, str]
) -> None:
    bounds = period_bounds(at(now), PARIS)
    assert bounds["day"] == (at(day[0]), at(day[1]))
    assert bounds["month"] == (at(month[0]), at(month[1]))


POLICY = make_policy(budgets={"spend": {"day": 10, "month": 100}})
DAY0 = at("2026-12-03T00:00:00+00:00")


@pytest.mark.parametrize(
    ("lives", "day", "month"),
    [
        ([], 0.0, 0.0),
        ([Lifetime("aws", "small", DAY0 + H, DAY0 + 3 * H)], 0.2, 0.2),
        ([Lifetime("aws", "big", DAY0 - 2 * H, None)], 0.4 * 10, 0.4 * 12),  # still running
        # ended before today; the month began on the 1st
        ([Lifetime("os", "big", DAY0 - 30 * 24 * H, DAY0 - H)], 0.0, 0.2 * 47),
        ([Lifetime("aws", "m1.odd", DAY0, DAY0 + H)], 0.4, 0.4),  # unpriced: the dearest
        ([Lifetime("gone-az", "small", DAY0, DAY0 + H)], 0.0, 0.0),  # not a public AZ of ours
        ([Lifetime("aws", "small", DAY0 + 5 * H, DAY0 + 20 * H)], 0.5, 0.5),  # not past now
    ],
)
def test_spend_is_each_lifetime_within_the_period_times_its_price(
    lives: list[Lifetime], day: float, month: float
) -> None:
    spend = spend_at(lives, POLICY, DAY0 + 10 * H)
    assert spend.day == pytest.approx(day)
    assert spend.month == pytest.approx(month)


@settings(max_examples=200, deadline=None)
@given(
    lives=st.lists(
        st.tuples(
            st.sampled_from(["aws", "os"]),
            st.sampled_from(["small", "big"]),
            st.floats(0, 5 * 24 * H),
            st.floats(1, 3 * 24 * H),
        ),
        max_size=20,
    ),
    until=st.floats(0, 6 * 24 * H),
)
def test_the_ledger_accruing_event_by_event_agrees_with_the_lifetimes(
    lives: list[tuple[str, str, float, float]], until: float
) -> None:
    """The simulator's accrual and the receiver's recount of lifetimes are one spend."""
    policy = make_policy(budgets={"spend": {"day": 1}, "timezone": "Europe/Paris"})
    start = at("2026-10-24T00:00:00+00:00")  # across the fall-back night
    lifetimes = [Lifetime(az, fl, start + s, start + s + d) for az, fl, s, d in lives]
    events = sorted(
        [(life.start, +1, life) for life in lifetimes]
        + [(life.end or 0.0, -1, life) for life in lifetimes],
        key=lambda e: (e[0], e[1]),
    )
    ledger, hourly = Ledger(PARIS, start), 0.0
    for t, sign, life in events:
        if t > start + until:
            break
        ledger.accrue(hourly, t)
        az = policy.public(life.az)
        assert az is not None
        hourly += sign * (az.price(life.flavor) or 0.0)
    ledger.accrue(hourly, start + until)
    want = spend_at(lifetimes, policy, start + until)
    assert ledger.now().day == pytest.approx(want.day, abs=1e-9)
    assert ledger.now().month == pytest.approx(want.month, abs=1e-9)


@pytest.mark.parametrize(
    ("spend", "periods"),
    [(Spend(7.9, 7.9), []), (Spend(8.0, 8.0), ["day"]), (Spend(9.0, 80.0), ["day", "month"])],
)
def test_the_warning_fires_at_its_share_of_a_budget(spend: Spend, periods: list[str]) -> None:
    assert warning(POLICY.budgets, spend) == periods


# --- the policy file ---------------------------------------------------------------------------


def test_budgets_are_read_with_their_defaults() -> None:
    policy = make_policy(budgets={"caps": {"instances": 12, "$comment": "x"}})
    b = policy.budgets
    assert (b.caps.instances, b.day, b.month, b.warn_at_pct, b.timezone) == (
        12,
        None,
        None,
        80.0,
        "UTC",
    )


@pytest.mark.parametrize(
    ("budgets", "key", "value", "reason"),
    [
        ({"spend": {"day": -1}}, "$.budgets.spend.day", -1, "minimum"),
        ({"spend": {"week": 5}}, "$.budgets.spend", None, "additionalProperties"),
        ({"spend": {"warn_at_pct": 120}}, "$.budgets.spend.warn_at_pct", 120, "maximum"),
        ({"caps": {"instances": 1.5}}, "$.budgets.caps.instances", 1.5, "type"),
        ({"timezone": "Mars/Olympus"}, "$.budgets.timezone", "Mars/Olympus", "unknown time zone"),
        ({"spend": {"month": 10}}, "$.public_azs[1].prices", None, "required: budgets.spend.month"),
        (
            {"caps": {"hourly_cost": 3}},
            "$.public_azs[1].prices",
            None,
            "required: budgets.caps.hourly_cost",
        ),
    ],
)
def test_a_bad_budget_is_refused_naming_the_key_and_the_value(
    budgets: dict[str, Any], key: str, value: object, reason: str
) -> None:
    doc = policy_doc(budgets=budgets)
    del doc["public_azs"][1]["prices"]
    with pytest.raises(PolicyError) as info:
        parse_policy(doc)
    [problem] = [p for p in info.value.problems if p.key == key]
    assert problem.reason.startswith(reason)
    if value is not None:
        assert problem.value == value


# --- decide ------------------------------------------------------------------------------------


def test_a_cap_on_the_public_azs_together_skips_every_az_and_falls_back() -> None:
    policy = make_policy(budgets={"caps": {"instances": 6}})
    busy = load(90.0, 1, aws=PublicUsage("aws", instances=4), os=PublicUsage("os", instances=2))
    d = decide(Request(SMALL), busy, policy, History(), DAY0)
    assert (d.az, d.rule) == ("local", "public_unavailable_local")
    assert d.skipped == (
        ("aws", "budget cap instances: 7 would exceed 6"),
        ("os", "budget cap instances: 7 would exceed 6"),
    )


def test_a_total_cost_cap_lets_the_cheaper_az_take_what_the_dearer_cannot() -> None:
    policy = make_policy(budgets={"caps": {"hourly_cost": 1.0}})
    busy = load(
        90.0,
        1,
        aws=PublicUsage("aws", instances=5, hourly_cost=0.5),
        os=PublicUsage("os", instances=4, hourly_cost=0.45),
    )
    d = decide(Request(SMALL), busy, policy, History(), DAY0)
    assert d.az == "os"  # 0.95 + 0.05 fits the total; + aws's 0.1 does not
    assert d.skipped == (("aws", "budget cap hourly_cost: 1.0500 would exceed 1"),)


def test_a_flavor_the_budget_cannot_pay_to_the_periods_end_is_skipped_a_cheaper_one_goes() -> None:
    policy = make_policy(budgets={"spend": {"day": 5}})
    now = DAY0 + 14 * H  # 10 h left today: room 0.5/h minus what runs
    running = load(85.0, 1, aws=PublicUsage("aws", instances=1, hourly_cost=0.1))
    small = decide(Request(SMALL), running, policy, History(), now, Spend(day=3.0, month=3.0))
    big = decide(Request(BIG), running, policy, History(), now, Spend(day=3.0, month=3.0))
    # 3 + (0.1 + 0.1) x 10 = 5 fits; big: 3 + (0.1 + 0.4) x 10 = 8 does not, nor 0.2 on os
    assert small.az == "aws"
    assert (big.az, big.rule) == ("local", "public_unavailable_local")
    assert [az for az, _ in big.skipped] == ["aws", "os"]
    assert all(why.startswith("budget spend: ") for _, why in big.skipped)


def test_what_was_spent_earlier_in_the_day_leaves_less_room_for_the_rest_of_it() -> None:
    policy = make_policy(budgets={"spend": {"day": 5}})
    now = DAY0 + 14 * H  # 10 h left
    running = load(85.0, 1, os=PublicUsage("os", instances=1, hourly_cost=0.03))
    # 4.5 + (0.03 + 0.05) x 10 = 5.3 > 5, though 0.08/h for a whole day (1.92) would fit
    d = decide(Request(SMALL), running, policy, History(), now, Spend(day=4.5, month=4.5))
    assert d.az == "local"
    assert d.skipped == (
        ("aws", "budget spend: 0.1/h more would pass a spend budget (room 0.02/h)"),
        ("os", "budget spend: 0.05/h more would pass a spend budget (room 0.02/h)"),
    )
    fresh = decide(Request(SMALL), running, policy, History(), now, Spend(day=1.0, month=1.0))
    assert fresh.az == "aws"


def test_budget_exhausted_names_the_spend_and_the_budget() -> None:
    policy = make_policy(budgets={"spend": {"month": 100}})
    d = decide(Request(SMALL), load(90.0), policy, History(), DAY0, Spend(day=1.0, month=100.0))
    assert d.rule == "budget_exhausted"
    assert "budget spend.month: 100.00 spent" in d.reason
    assert d.compared["spend_month"] == {"value": 100.0, "limit": 100}


def test_without_a_spend_budget_the_spend_is_not_read() -> None:
    spent = Spend(day=math.inf, month=math.inf)
    assert decide(Request(SMALL), load(90.0), make_policy(), History(), DAY0, spent).az == "aws"


# --- properties: never passed, whatever the requests, hints and lifetimes -------------------

DAY_BUDGET, MONTH_BUDGET = 6.0, 15.0
BUDGET_POLICY = make_policy(
    flavors={"allow": ["*"]},
    budgets={
        "caps": {"instances": 8, "vcpus": 14},
        "spend": {"day": DAY_BUDGET, "month": MONTH_BUDGET},
    },
)
UTC = ZoneInfo("UTC")
LATE_IN_A_MONTH = at("2026-12-30T00:00:00+00:00")  # the month's budget binds, then resets
boots = st.lists(
    st.tuples(
        st.floats(0, 60 * 60),  # seconds after the previous boot
        st.sampled_from([SMALL, BIG]),
        st.sampled_from(["allowed", "prefer", "prefer", "never"]),
        st.sampled_from([None, None, None, "aws", "os"]),
        st.floats(0, 100),  # local memory used %
        st.floats(60, 30 * H),  # lifetime
    ),
    min_size=1,
    max_size=60,
)


class _Bill:
    """Public instances running over simulated time, and what they cost per day and month,
    checked against the budgets at every change and just before every period ends."""

    def __init__(self, start: float) -> None:
        self.usage = {az.name: PublicUsage(az.name) for az in BUDGET_POLICY.public_azs}
        self.ends: list[tuple[float, int, str, Flavor, float]] = []
        self.ledger = Ledger(UTC, start)

    def hourly(self) -> float:
        return sum(u.hourly_cost for u in self.usage.values())

    def accrue(self, to: float) -> None:
        while self.ledger.clock < to:
            period_end = min(end for _, end in period_bounds(self.ledger.clock, UTC).values())
            self.ledger.accrue(self.hourly(), min(to, period_end - 1e-6))
            assert self.ledger.now().day <= DAY_BUDGET + 1e-6
            assert self.ledger.now().month <= MONTH_BUDGET + 1e-6
            self.ledger.accrue(self.hourly(), min(to, period_end))

    def advance(self, to: float) -> None:
        while self.ends and self.ends[0][0] <= to:
            end, _, az, fl, price = heapq.heappop(self.ends)
            self.accrue(end)
            self.usage[az] = _plus(self.usage[az], fl, price, -1)
        self.accrue(to)

    def start(self, az: str, flavor: Flavor, until: float, seq: int) -> None:
        public = BUDGET_POLICY.public(az)
        assert public is not None
        price = public.price(flavor.name) or public.max_price
        self.usage[az] = _plus(self.usage[az], flavor, price, +1)
        heapq.heappush(self.ends, (until, seq, az, flavor, price))


@settings(max_examples=300, deadline=None)
@given(reqs=boots, start_h=st.floats(0, 47))
def test_budgets_are_never_exceeded_whatever_the_boots_hints_and_lifetimes(
    reqs: list[tuple[float, Flavor, str, str | None, float, float]], start_h: float
) -> None:
    caps = BUDGET_POLICY.budgets.caps
    now = LATE_IN_A_MONTH + start_h * H
    bill, history, bursts = _Bill(now), History(), 0
    for i, (gap, flavor, hint, asked, mem, life) in enumerate(reqs):
        now += gap
        bill.advance(now)
        request = Request(flavor, asked, burst_hint=hint)
        current = Load(local(mem, 1), dict(bill.usage))
        d = decide(request, current, BUDGET_POLICY, history, now, bill.ledger.now())
        history = history.after(d, now)
        if d.az in bill.usage:
            bill.start(d.az, flavor, now + life, i)
            bursts += 1
        total = [sum(getattr(u, k) for u in bill.usage.values()) for k in ("instances", "vcpus")]
        assert total[0] <= (caps.instances or 0)
        assert total[1] <= (caps.vcpus or 0)
    # every instance runs to its end, past the day's and the month's ends if it lives so long
    bill.advance(max([now, *(end for end, *_ in bill.ends)]))


def _plus(u: PublicUsage, flavor: Flavor, price: float, sign: int) -> PublicUsage:
    return replace(
        u,
        instances=u.instances + sign,
        vcpus=u.vcpus + sign * flavor.vcpus,
        ram_mb=u.ram_mb + sign * flavor.ram_mb,
        hourly_cost=u.hourly_cost + sign * price,
    )


@settings(max_examples=300, deadline=None)
@given(
    aws=st.integers(0, 8),
    os_=st.integers(0, 8),
    spent=st.floats(0, 8),
    hour=st.floats(0, 23.9),
    mem=st.floats(0, 100),
    flavor=st.sampled_from([SMALL, BIG]),
)
def test_a_prefer_hint_never_passes_a_budget_that_the_same_boot_without_it_would_respect(
    aws: int, os_: int, spent: float, hour: float, mem: float, flavor: Flavor
) -> None:
    usage = {
        "aws": PublicUsage("aws", instances=aws, vcpus=aws, hourly_cost=0.1 * aws),
        "os": PublicUsage("os", instances=os_, vcpus=os_, hourly_cost=0.05 * os_),
    }
    now, spend = DAY0 + hour * H, Spend(day=spent, month=spent)
    current = Load(local(mem, 1), usage)
    preferred = decide(
        Request(flavor, burst_hint="prefer"), current, BUDGET_POLICY, History(), now, spend
    )
    if not preferred.burst:
        return
    # what a burst by load would get, for the same boot: a public AZ, the same one
    high = Load(local(95.0, 1), usage)
    by_load = decide(Request(flavor), high, BUDGET_POLICY, History(), now, spend)
    assert by_load.az == preferred.az, (preferred, by_load)


# --- simulate ----------------------------------------------------------------------------------


def test_simulate_stops_bursting_when_the_day_budget_is_used_and_recounts_it(
    tmp_path: Path,
) -> None:
    """One big instance an hour (6 h each) under a day budget of 4.8: the running rate may
    not pass 4.8/24 = 0.2/h, so the first goes to os (0.2/h; aws's 0.4 is skipped), the rest
    stay local with budget_exhausted; the day's spend agrees with a recount of the lifetimes."""
    policy = make_policy(
        flavors={"allow": ["*"]}, budgets={"spend": {"day": 4.8, "warn_at_pct": 20}}
    )
    rows = [f"{DAY0 + i * H:.0f},90,1,big,{6 * H:.0f}" for i in range(6)]
    trace = tmp_path / "t.csv"
    trace.write_text("t,memory_used_pct,instances,flavor,lifetime_s\n" + "\n".join(rows) + "\n")
    result = run(policy, read_trace(trace))
    rules = [d.rule for d in result.decisions]
    assert rules[0] == "burst_threshold_exceeded"
    assert set(rules[1:]) == {"budget_exhausted"}, rules
    # 0.2 x 6 h = 1.2: under the budget, over the 20 % warning (0.96) after 4.8 h
    lives = [
        Lifetime(d.az, "big", s.t, s.t + 6 * H)
        for s, d in zip(result.steps, result.decisions, strict=True)
        if d.burst and d.az
    ]
    assert [life.az for life in lives] == ["os"]
    recount = spend_at(lives, policy, DAY0 + 23 * H)
    doc = result.as_dict()["budgets"]
    assert doc["day"]["peak_spend"] == pytest.approx(recount.day) == pytest.approx(1.2)
    assert doc["day"]["warned_at"] == "2026-12-03T05:00:00+00:00"
    assert result.as_dict()["steps"][3]["spend_day"] == pytest.approx(0.6)


# --- explain -----------------------------------------------------------------------------------


def test_explain_answers_for_a_project_and_a_hint_with_the_budgets_in_force() -> None:
    from azfed.policy import explain
    from azfed.policy.commands import render_explain

    policy = make_policy(
        projects={"allow": ["*"], "deny": ["p-lab"]},
        budgets={"caps": {"instances": 6}, "spend": {"day": 10, "warn_at_pct": 50}},
    )
    quiet = load(10.0, 1, aws=PublicUsage("aws", instances=2, hourly_cost=0.2))
    spent = Spend(day=6.0, month=6.0)
    noon = DAY0 + 12 * H  # 6 + (0.2 + 0.1)/h x 12 h = 9.6 fits a budget of 10
    doc = explain(quiet, policy, History(), noon, SMALL, burst_hint="prefer", spend=spent)
    assert doc["request"] == {"project_id": "", "burst_hint": "prefer"}
    assert (doc["next_boot"]["rule"], doc["next_boot"]["az"]) == ("burst_hint_prefer", "aws")
    assert doc["budgets"]["caps"]["instances"] == {"used": 2.0, "cap": 6}
    assert doc["budgets"]["spend"] == {"day": {"spent": 6.0, "budget": 10}}
    assert doc["budgets"]["warning"] == ["day"]
    text = render_explain(doc)
    assert "budgets (all public AZs; UTC): instances 2/6; day 6.00 of 10 spent (WARNING)" in text
    assert "next boot of small (hint azfed:burst=prefer): aws (rule burst_hint_prefer" in text

    lab = explain(quiet, policy, History(), DAY0, SMALL, project_id="p-lab", burst_hint="prefer")
    assert lab["next_boot"]["rule"] == "project_denied"
    assert "next boot of small (project p-lab, hint azfed:burst=prefer): local" in render_explain(
        lab
    )
    used_up = explain(load(90.0), policy, History(), DAY0, SMALL, spend=Spend(10.0, 10.0))
    assert used_up["next_boot"]["rule"] == "budget_exhausted"


def test_explain_without_budgets_shows_none() -> None:
    from azfed.policy import explain

    assert explain(load(), make_policy(), History(), DAY0, SMALL)["budgets"] is None


def test_the_explain_command_takes_a_project_and_a_hint() -> None:
    from azfed.cli import main
    from click.testing import CliRunner

    out = CliRunner().invoke(main, ["policy", "explain", "--help"]).stdout
    assert "--project" in out
    assert "--hint" in out

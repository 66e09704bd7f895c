"""The capacity back-off: per (public AZ, flavor), exponential between the policy's initial and
maximum, reset by a launch or by a quiet spell; decide skips a backed-off AZ for that flavor
only; the policy keys, their deprecated predecessor, and what explain shows."""

from __future__ import annotations

import pytest
from azfed.errors import PolicyError
from azfed.policy import Flavor, History, Request, decide, parse_policy
from azfed.policy.decide import Streak
from azfed.policy.explain import explain
from azfed.policy.model import Backoff
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.policies import load, make_policy, policy_doc

B = Backoff(initial_s=100, max_s=400)
SMALL = Flavor("small", 1, 512)


@pytest.mark.parametrize(
    ("failures_at", "count", "backoff"),
    [
        ([0], 1, 100),  # the first: initial_s
        ([0, 100], 2, 200),  # right after the back-off ended: doubled
        ([0, 100, 300], 3, 400),
        ([0, 100, 300, 700], 4, 400),  # never past max_s
        ([0, 50], 1, 100),  # during the back-off (a boot already on its way): unchanged
        ([0, 100, 250], 2, 200),  # ... also at the second step
        ([0, 499], 2, 200),  # within max_s after the back-off ended: the streak goes on
        ([0, 500], 1, 100),  # max_s of quiet after the back-off: forgotten, starts over
    ],
)
def test_consecutive_failures_double_the_backoff_up_to_the_maximum(
    failures_at: list[float], count: int, backoff: float
) -> None:
    h = History()
    for at in failures_at:
        h = h.with_failure("aws", "small", at, B)
    streak = h.failures[("aws", "small")]
    assert (streak.count, streak.backoff(B)) == (count, backoff)


def test_a_launch_resets_the_streak_and_other_flavors_keep_theirs() -> None:
    h = History().with_failure("aws", "small", 0, B).with_failure("aws", "big", 0, B)
    h = h.with_failure("aws", "small", 100, B).with_success("aws", "small")
    assert list(h.failures) == [("aws", "big")]
    assert h.with_failure("aws", "small", 101, B).failures[("aws", "small")].count == 1


def test_a_new_failure_forgets_the_other_streaks_that_ended_long_ago() -> None:
    h = History().with_failure("os", "small", 0, B)
    h = h.with_failure("aws", "small", 10_000, B)
    assert list(h.failures) == [("aws", "small")]


@settings(max_examples=300, deadline=None)
@given(
    initial=st.floats(1, 1000),
    factor=st.floats(1, 64),
    gaps=st.lists(st.floats(0, 100_000), min_size=1, max_size=30),
)
def test_the_backoff_always_lies_between_initial_and_max_and_grows_by_one_step_at_most(
    initial: float, factor: float, gaps: list[float]
) -> None:
    """Whatever the failures' spacing: initial_s <= back-off <= max_s; the count grows by one
    at most per failure, and only for a failure at or after the back-off's end."""
    backoff = Backoff(initial, initial * factor)
    h, at = History(), 0.0
    for gap in gaps:
        at += gap
        before = h.failures.get(("aws", "small"))
        h = h.with_failure("aws", "small", at, backoff)
        streak = h.failures[("aws", "small")]
        assert backoff.initial_s <= streak.backoff(backoff) <= backoff.max_s
        if before is not None and at < before.ends_at(backoff):
            assert streak.count == before.count
        else:
            assert streak.count <= (before.count if before else 0) + 1


@settings(max_examples=300, deadline=None)
@given(
    failed_at=st.floats(0, 5000),
    count=st.integers(1, 8),
    now=st.floats(0, 20_000),
    flavor=st.sampled_from(["small", "big"]),
)
def test_decide_never_sends_a_flavor_to_an_az_backing_off_for_it(
    failed_at: float, count: int, now: float, flavor: str
) -> None:
    policy = make_policy()
    h = History(failures={("aws", "small"): Streak(count, failed_at)})
    fl = SMALL if flavor == "small" else Flavor("big", 4, 4096)
    d = decide(Request(fl), load(90.0), policy, h, now)
    backing_off = flavor == "small" and now < failed_at + policy.capacity_backoff.after(count)
    assert (d.az == "aws") == (not backing_off)
    assert "aws" not in d.fallback


def test_the_policy_reads_capacity_backoff() -> None:
    policy = parse_policy(
        policy_doc(fallback={"capacity_backoff": {"initial_s": 30, "max_s": 600}})
    )
    assert policy.capacity_backoff == Backoff(30, 600)
    assert policy.warnings == ()


def test_the_deprecated_flat_backoff_is_read_as_the_initial_one_with_a_warning() -> None:
    policy = parse_policy(policy_doc(fallback={"capacity_failure_backoff_s": 120}))
    assert policy.capacity_backoff == Backoff(120, 3600)
    [warning] = policy.warnings
    assert warning.key == "$.fallback.capacity_failure_backoff_s"
    assert "deprecated" in warning.reason
    assert '"capacity_backoff": {"initial_s": 120' in warning.reason


@pytest.mark.parametrize(
    ("fallback", "key", "words"),
    [
        (
            {"capacity_backoff": {"initial_s": 600, "max_s": 60}},
            "$.fallback.capacity_backoff.max_s",
            "must be at least initial_s = 600",
        ),
        (
            {"capacity_backoff": {"initial_s": 60}, "capacity_failure_backoff_s": 60},
            "$.fallback.capacity_failure_backoff_s",
            "keep capacity_backoff only",
        ),
        ({"capacity_backoff": {"initial_s": -1}}, "$.fallback.capacity_backoff.initial_s", ""),
        ({"capacity_backoff": {"max": 60}}, "$.fallback.capacity_backoff", "max"),
    ],
)
def test_bad_backoff_settings_are_refused_naming_the_key(
    fallback: dict[str, object], key: str, words: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(policy_doc(fallback=fallback))
    problems = {p.key: p.reason for p in caught.value.problems}
    assert key in problems, problems
    assert words in problems[key]


def test_explain_shows_the_backoff_of_the_flavor_asked_about() -> None:
    policy = make_policy()  # initial 120 s, max 960 s
    h = History()
    for at in (0.0, 120.0):
        h = h.with_failure("aws", "small", at, policy.capacity_backoff, "no capacity")
    doc = explain(load(90.0), policy, h, 200.0, SMALL)
    aws = doc["public"][0]
    assert aws["backing_off"] is True
    assert aws["backoff"] == {
        "flavor": "small",
        "failures": 2,
        "last_failure_at": 120.0,
        "backoff_s": 240.0,
        "left_s": 160.0,
        "reason": "no capacity",
    }
    assert doc["next_boot"]["az"] == "os"
    other = explain(load(90.0), policy, h, 200.0, Flavor("big", 4, 4096))
    assert other["public"][0]["backing_off"] is False
    assert other["public"][0]["backoff"] is None

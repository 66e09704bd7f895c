"""Property tests of decide(): monotone in load, no flapping inside the hysteresis band, caps
never exceeded, whatever the sequence of requests."""

from __future__ import annotations

from dataclasses import replace

from azfed.policy import Flavor, History, Load, PublicUsage, Request, decide
from azfed.policy.decide import Streak
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.policies import local, make_policy

POLICY = make_policy()
FLAVORS = [Flavor("small", 1, 512), Flavor("big", 4, 4096), Flavor("other", 1, 512)]

histories = st.builds(
    History,
    mode=st.sampled_from(["local", "burst"]),
    mode_since=st.floats(0, 2000),
    failures=st.dictionaries(
        st.tuples(st.sampled_from(["aws", "os"]), st.sampled_from(["small", "big", "*"])),
        st.builds(Streak, count=st.integers(1, 6), last_at=st.floats(0, 4000)),
        max_size=4,
    ),
)
usages = st.builds(
    PublicUsage,
    az=st.just("aws"),
    instances=st.integers(0, 12),
    vcpus=st.floats(0, 25),
    ram_mb=st.floats(0, 25000),
    hourly_cost=st.floats(0, 1.2),
)


@settings(max_examples=400, deadline=None)
@given(
    mem=st.tuples(st.floats(0, 100), st.floats(0, 100)).map(sorted),
    inst=st.tuples(st.integers(0, 30), st.integers(0, 30)).map(sorted),
    history=histories,
    aws=usages,
    flavor=st.sampled_from(FLAVORS),
    now=st.floats(2000, 4000),
)
def test_more_local_load_never_makes_a_local_placement_more_likely(
    mem: list[float],
    inst: list[int],
    history: History,
    aws: PublicUsage,
    flavor: Flavor,
    now: float,
) -> None:
    less = Load(local(mem[0], inst[0]), {"aws": aws})
    more = Load(local(mem[1], inst[1]), {"aws": aws})
    at_more = decide(Request(flavor), more, POLICY, history, now)
    at_less = decide(Request(flavor), less, POLICY, history, now)
    if at_more.az == "local":
        assert at_less.az == "local", (at_more, at_less)


@settings(max_examples=300, deadline=None)
@given(
    loads=st.lists(st.tuples(st.floats(60.01, 79.99), st.integers(0, 9)), min_size=2, max_size=60),
    start=st.sampled_from(["local", "burst"]),
    step=st.floats(0, 1000),
)
def test_a_load_oscillating_inside_the_hysteresis_band_never_flaps(
    loads: list[tuple[float, int]], start: str, step: float
) -> None:
    # memory stays strictly between return (60) and burst (80): no mode change may happen,
    # however long it goes on. (instances < 10 never bursts; > 6 sometimes, which holds burst)
    history = History(mode=start, mode_since=0.0)  # type: ignore[arg-type]
    now = 10_000.0
    azs = set()
    for mem, inst in loads:
        now += step
        d = decide(Request(FLAVORS[0]), Load(local(mem, inst)), POLICY, history, now)
        history = history.after(d, now)
        azs.add(d.az)
        assert history.mode == start
    assert len(azs) == 1


@settings(max_examples=200, deadline=None)
@given(highs=st.lists(st.booleans(), min_size=2, max_size=60))
def test_swinging_between_the_burst_threshold_and_the_band_switches_at_most_once(
    highs: list[bool],
) -> None:
    history, now, switches = History(), 10_000.0, 0
    for high in highs:
        now += 1.0
        mem = 85.0 if high else 70.0
        d = decide(Request(FLAVORS[0]), Load(local(mem, 1)), POLICY, history, now)
        new = history.after(d, now)
        switches += new.mode != history.mode
        history = new
    assert switches <= 1


requests = st.lists(
    st.tuples(
        st.sampled_from(FLAVORS),
        st.sampled_from([None, None, None, "aws", "os", "local"]),
        st.floats(50, 100),
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(reqs=requests, explicit=st.sampled_from(["honour", "apply-policy"]))
def test_caps_are_never_exceeded_whatever_the_requests(
    reqs: list[tuple[Flavor, str | None, float]], explicit: str
) -> None:
    policy = make_policy(explicit_az=explicit, flavors={"allow": ["*"]})
    usage = {az.name: PublicUsage(az.name) for az in policy.public_azs}
    history, now = History(), 0.0
    for flavor, asked, mem in reqs:
        now += 7.0
        d = decide(Request(flavor, asked), Load(local(mem, 1), usage), policy, history, now)
        history = history.after(d, now)
        if d.az in usage:
            u, az = usage[d.az], policy.public(d.az)
            assert az is not None
            price = az.price(flavor.name)
            # a cost cap never admits an unpriced flavor; without one, it costs the dearest
            assert price is not None or az.caps.hourly_cost is None
            price = az.max_price if price is None else price
            usage[d.az] = replace(
                u,
                instances=u.instances + 1,
                vcpus=u.vcpus + flavor.vcpus,
                ram_mb=u.ram_mb + flavor.ram_mb,
                hourly_cost=u.hourly_cost + price,
            )
        for az in policy.public_azs:
            u, c = usage[az.name], az.caps
            assert c.instances is None or u.instances <= c.instances
            assert c.vcpus is None or u.vcpus <= c.vcpus
            assert c.ram_mb is None or u.ram_mb <= c.ram_mb
            assert c.hourly_cost is None or u.hourly_cost <= c.hourly_cost + 1e-9

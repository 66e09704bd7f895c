"""The load from host states, summed in one pass for the scheduler filter's speed, is the very
load the plain sums give: the same numbers, the same types (an AZ without hosts reads 0, not
0.0), bit for bit, over generated host states; and the grouping by AZ follows `host_az`.

The oracle below is the load as it was written before it was made fast: clear, one helper per
figure, builtin sum() and max(). It lives here, not in the product."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from azfed.policy import Flavor, Load, LocalLoad, PublicUsage, Request, load_from_hosts
from azfed.policy.engine import PolicyEngine
from azfed.policy.load import DEFAULT_AZ, group_by_az, host_az
from azfed.policy.model import Policy, PublicAz
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.policies import Agg, Host, make_policy, policy_doc

AZS = ("local", "aws", "os", "elsewhere")
POLICY = make_policy()
PROPERTY = settings(max_examples=300, deadline=None)


# --- the oracle -------------------------------------------------------------------------------


def _ram(h: Host) -> tuple[float, float]:
    total = float(h.total_usable_ram_mb)
    return total - float(h.free_ram_mb), total * float(h.ram_allocation_ratio or 1.0)


def _vcpus(h: Host) -> tuple[float, float]:
    return float(h.vcpus_used), float(h.vcpus_total) * float(h.cpu_allocation_ratio or 1.0)


def _plain_local(az: str, hosts: Sequence[Host]) -> LocalLoad:
    ram_used = ram_cap = cpu_used = cpu_cap = 0.0
    free_ram = free_cpu = -math.inf
    for h in hosts:
        (ru, rc), (cu, cc) = _ram(h), _vcpus(h)
        ram_used, ram_cap, cpu_used, cpu_cap = (
            ram_used + ru,
            ram_cap + rc,
            cpu_used + cu,
            cpu_cap + cc,
        )
        free_ram, free_cpu = max(free_ram, rc - ru), max(free_cpu, cc - cu)
    return LocalLoad(
        az=az,
        hosts=len(hosts),
        instances=sum(int(h.num_instances) for h in hosts),
        ram_used_mb=ram_used,
        ram_capacity_mb=ram_cap,
        vcpus_used=cpu_used,
        vcpus_capacity=cpu_cap,
        largest_free_ram_mb=free_ram if hosts else 0.0,
        largest_free_vcpus=free_cpu if hosts else 0.0,
    )


def _plain_cost(h: Host, az: PublicAz, prices: Mapping[str, float]) -> float:
    uuids, dearest = h.instances or (), az.max_price
    known = sum(prices.get(u, dearest) for u in uuids)
    return known + max(0, int(h.num_instances) - len(uuids)) * dearest


def _plain_public(az: PublicAz, hosts: Sequence[Host], prices: Mapping[str, float]) -> PublicUsage:
    return PublicUsage(
        az=az.name,
        hosts=len(hosts),
        instances=sum(int(h.num_instances) for h in hosts),
        vcpus=sum(float(h.vcpus_used) for h in hosts),
        ram_mb=sum(_ram(h)[0] for h in hosts),
        hourly_cost=round(sum(_plain_cost(h, az, prices) for h in hosts), 6),
    )


def _plain_load(hosts: Sequence[Host], policy: Policy, prices: Mapping[str, float]) -> Load:
    def of(az: str) -> list[Host]:
        return [h for h in hosts if host_az(h) == az]

    public = {az.name: _plain_public(az, of(az.name), prices) for az in policy.public_azs}
    return Load(_plain_local(policy.local_az, of(policy.local_az)), public)


def exactly(load: Load) -> str:
    """Every figure with its type: 0 and 0.0, and the last bit of a float, tell apart."""
    return json.dumps({"local": asdict(load.local), "public": load.public}, default=asdict)


# --- generated host states --------------------------------------------------------------------

numbers = st.one_of(
    st.integers(0, 1 << 20), st.floats(0, 1e6, allow_nan=False, allow_infinity=False)
)
ratios = st.one_of(st.none(), st.sampled_from([0.0, 0.5, 1.0, 1.5, 4.0, 16.0]))
# an AZ as Nova reads it: the first aggregate whose metadata has a non-empty one
aggregates = st.lists(
    st.builds(
        Agg,
        st.one_of(
            st.just({}),
            st.builds(lambda az: {"availability_zone": az}, st.sampled_from(("", *AZS))),
        ),
    ),
    max_size=3,
)


@st.composite
def hosts(draw: st.DrawFn) -> Host:
    h = Host(draw(st.text("abc", min_size=1, max_size=4)), "local")
    h.aggregates = draw(aggregates)
    h.total_usable_ram_mb, h.free_ram_mb = draw(numbers), draw(numbers)
    h.vcpus_total, h.vcpus_used = draw(numbers), draw(numbers)
    h.ram_allocation_ratio, h.cpu_allocation_ratio = draw(ratios), draw(ratios)
    uuids = draw(st.lists(st.sampled_from(["u1", "u2", "u3", "u4", "u5"]), unique=True))
    h.instances = {u: object() for u in uuids}
    # a boot just scheduled is counted before the compute reports its uuid, or the reverse
    h.num_instances = max(0, len(uuids) + draw(st.integers(-2, 3)))
    return h


host_lists = st.lists(hosts(), max_size=40)
known_prices = st.dictionaries(
    st.sampled_from(["u1", "u2", "u3", "u9"]), st.floats(0, 10, allow_nan=False)
)


@PROPERTY
@given(host_lists, known_prices)
def test_the_fast_load_is_the_plain_load_bit_for_bit(
    hs: list[Host], prices: dict[str, float]
) -> None:
    assert exactly(load_from_hosts(hs, POLICY, prices)) == exactly(_plain_load(hs, POLICY, prices))


@PROPERTY
@given(host_lists)
def test_grouping_by_az_puts_each_host_under_its_host_az_in_the_order_given(
    hs: list[Host],
) -> None:
    by_az = group_by_az(hs)
    assert {az: [id(h) for h in g] for az, g in by_az.items()} == {
        az: [id(h) for h in hs if host_az(h) == az] for az in {host_az(h) for h in hs}
    }


def test_a_host_in_no_az_aggregate_is_in_novas_default_az() -> None:
    h = Host("h", "local")
    h.aggregates = [Agg({}), Agg({"availability_zone": ""})]
    assert host_az(h) == DEFAULT_AZ
    assert group_by_az([h]) == {DEFAULT_AZ: [h]}


@settings(max_examples=25, deadline=None)  # a durable file write per example
@given(host_lists)
def test_the_state_file_records_the_load_the_decision_was_taken_on(
    tmp_path_factory: Any, hs: list[Host]
) -> None:
    tmp = tmp_path_factory.mktemp("state")
    policy_file = Path(tmp / "policy.json")
    policy_file.write_text(json.dumps(policy_doc()))
    engine = PolicyEngine(policy_file, state_file=tmp / "state.json")
    engine.filter(hs, Request(Flavor("small", 1, 512)))
    assert engine.flush(10)
    recorded = json.loads((tmp / "state.json").read_text())["last_load"]
    load = _plain_load(hs, engine.current() or POLICY, {})
    assert recorded["public"] == json.loads(json.dumps(load.public, default=asdict))
    assert {k: v for k, v in recorded["local"].items() if not k.endswith("_pct")} == asdict(
        load.local
    )

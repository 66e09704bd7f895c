"""The local AZ's load and the public AZs' usage, read two ways that must agree.

- `load_from_hosts`: from the host states nova-scheduler hands a filter (no I/O: it runs on
  every scheduling request).
- `load_from_cloud`: from Placement and Nova through openstacksdk, for the CLI and the receiver.

Both count memory and vCPUs the way Nova's own host state does: capacity is
total x allocation ratio, and used includes the host's reserved amount (a host state only
knows free = total - reserved - allocations, never the reservation alone). Placement gives
the parts, so it is summed the same way: used = usage + reserved.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Protocol, TypeVar

from azfed.policy.model import Policy, PublicAz

DEFAULT_AZ = "nova"  # Nova's default_availability_zone for hosts in no AZ aggregate


@dataclass(frozen=True)
class LocalLoad:
    """What the local AZ carries now. `hosts == 0` means it has no room Nova offered us."""

    az: str
    hosts: int = 0
    instances: int = 0
    ram_used_mb: float = 0.0
    ram_capacity_mb: float = 0.0
    vcpus_used: float = 0.0
    vcpus_capacity: float = 0.0
    largest_free_ram_mb: float = 0.0
    largest_free_vcpus: float = 0.0

    @property
    def memory_used_pct(self) -> float:
        return _pct(self.ram_used_mb, self.ram_capacity_mb)

    @property
    def vcpus_used_pct(self) -> float:
        return _pct(self.vcpus_used, self.vcpus_capacity)

    def metric(self, name: str) -> float:
        """A threshold metric by its policy.json name."""
        return float(getattr(self, name))

    def fits(self, ram_mb: float, vcpus: float) -> bool:
        """Could one local host take this request? (Placement has the final word.)"""
        return (
            self.hosts > 0
            and self.largest_free_ram_mb >= ram_mb
            and self.largest_free_vcpus >= vcpus
        )


@dataclass(frozen=True)
class PublicUsage:
    """What one public AZ carries now, in the units of its caps."""

    az: str
    hosts: int = 0
    instances: int = 0
    vcpus: float = 0.0
    ram_mb: float = 0.0
    hourly_cost: float = 0.0


@dataclass(frozen=True)
class Load:
    """The load `decide` reads: the local AZ and each public AZ of the policy."""

    local: LocalLoad
    public: Mapping[str, PublicUsage] = field(default_factory=dict)

    def usage(self, az: str) -> PublicUsage:
        return self.public.get(az) or PublicUsage(az)


def _pct(used: float, capacity: float) -> float:
    # no capacity at all is full, not empty: an AZ without hosts must never attract boots
    return 100.0 if capacity <= 0 else round(100.0 * used / capacity, 3)


# --- from host states -----------------------------------------------------------------------


class HostLike(Protocol):
    """The parts of nova.scheduler.host_manager.HostState the policy reads."""

    host: str
    nodename: str
    free_ram_mb: float
    total_usable_ram_mb: float
    ram_allocation_ratio: float | None
    vcpus_total: float
    vcpus_used: float
    cpu_allocation_ratio: float | None
    num_instances: int
    aggregates: Any
    instances: Any


H = TypeVar("H", bound=HostLike)


def host_az(host: HostLike) -> str:
    """The AZ of a host, from its aggregates' metadata, as Nova computes it."""
    for agg in host.aggregates:
        az = agg.metadata.get("availability_zone")
        if az:
            return str(az)
    return DEFAULT_AZ


def local_from_hosts(az: str, hosts: Iterable[HostLike]) -> LocalLoad:
    """Sum the local AZ's hosts (already selected by AZ).

    Memory counts reserved as used; capacity is total x allocation ratio. One pass, each value
    read once, no helper call per host: it runs per scheduling request over up to thousands of
    hosts, and calls and tuples were most of its cost. Sums add up in host order, as always
    (float addition is not associative: the same hosts must give the very same load)."""
    n = instances = 0
    ram_used = ram_cap = cpu_used = cpu_cap = 0.0
    free_ram = free_cpu = -math.inf
    for h in hosts:
        total = float(h.total_usable_ram_mb)
        ru = total - float(h.free_ram_mb)
        rc = total * float(h.ram_allocation_ratio or 1.0)
        cu = float(h.vcpus_used)
        cc = float(h.vcpus_total) * float(h.cpu_allocation_ratio or 1.0)
        n += 1
        instances += int(h.num_instances)
        ram_used += ru
        ram_cap += rc
        cpu_used += cu
        cpu_cap += cc
        # max() as a comparison (the first of equals kept, as max keeps it): a builtin call per
        # host and metric cost more than the rest of this loop
        if rc - ru > free_ram:  # noqa: PLR1730
            free_ram = rc - ru
        if cc - cu > free_cpu:  # noqa: PLR1730
            free_cpu = cc - cu
    return LocalLoad(
        az=az,
        hosts=n,
        instances=instances,
        ram_used_mb=ram_used,
        ram_capacity_mb=ram_cap,
        vcpus_used=cpu_used,
        vcpus_capacity=cpu_cap,
        largest_free_ram_mb=free_ram if n else 0.0,
        largest_free_vcpus=free_cpu if n else 0.0,
    )


def public_from_hosts(
    az: PublicAz, hosts: Iterable[HostLike], prices: Mapping[str, float]
) -> PublicUsage:
    """Sum a public AZ's proxy hosts. `prices`: instance uuid -> hourly price, where known.

    An instance's cost is its known price, or the AZ's dearest for an unknown one (never
    under-count); one just scheduled, not reported yet, is only in the host's count. One pass
    collects each figure, and sum() adds them up: the very sums of the values in host order
    that the load has always been (from 3.12, sum() of floats is compensated, unlike +=)."""
    dearest, price = az.max_price, prices.get  # once per AZ, not per host
    counts: list[int] = []
    vcpus: list[float] = []
    ram: list[float] = []
    costs: list[float] = []
    for h in hosts:
        uuids, count = h.instances or (), int(h.num_instances)
        counts.append(count)
        vcpus.append(float(h.vcpus_used))
        ram.append(float(h.total_usable_ram_mb) - float(h.free_ram_mb))
        known = sum(map(price, uuids, repeat(dearest)))
        costs.append(known + max(0, count - len(uuids)) * dearest)
    return PublicUsage(
        az=az.name,
        hosts=len(counts),
        instances=sum(counts),
        vcpus=sum(vcpus),
        ram_mb=sum(ram),
        hourly_cost=round(sum(costs), 6),
    )


def group_by_az(hosts: Iterable[H]) -> dict[str, list[H]]:
    """Hosts by AZ, each list in the order given (Nova's weighers see them unchanged)."""
    by_az: dict[str, list[H]] = {}
    for h in hosts:
        # host_az's rule, inlined: the call per host was a fifth of the filter's grouping, and
        # the grouping runs per scheduling request (tests/policy/test_load_from_hosts.py ties
        # the two)
        for agg in h.aggregates:
            az = agg.metadata.get("availability_zone")
            if az:
                az = str(az)
                break
        else:
            az = DEFAULT_AZ
        same = by_az.get(az)
        if same is None:
            by_az[az] = [h]
        else:
            same.append(h)
    return by_az


def load_from_hosts(
    hosts: Iterable[HostLike] | Mapping[str, Sequence[HostLike]],
    policy: Policy,
    prices: Mapping[str, float] | None = None,
) -> Load:
    """The load from the host states nova-scheduler hands a filter (or from them already
    grouped by `group_by_az`). No I/O."""
    by_az = hosts if isinstance(hosts, Mapping) else group_by_az(hosts)
    public = {
        az.name: public_from_hosts(az, by_az.get(az.name, ()), prices or {})
        for az in policy.public_azs
    }
    return Load(local_from_hosts(policy.local_az, by_az.get(policy.local_az, ())), public)


# --- from the cloud's APIs ------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderView:
    """One resource provider as Placement reports it, plus the servers on its host."""

    name: str
    inventories: Mapping[str, Mapping[str, float]]
    usages: Mapping[str, float]
    flavors: tuple[str, ...]  # one per server on the host

    def used_capacity(self, rc: str) -> tuple[float, float]:
        inv = self.inventories.get(rc)
        if inv is None:
            return 0.0, 0.0
        used = float(self.usages.get(rc, 0)) + float(inv.get("reserved", 0))
        return used, float(inv["total"]) * float(inv.get("allocation_ratio", 1.0))


def local_from_providers(az: str, providers: Iterable[ProviderView]) -> LocalLoad:
    ps = list(providers)
    rams = [p.used_capacity("MEMORY_MB") for p in ps]
    cpus = [p.used_capacity("VCPU") for p in ps]
    return LocalLoad(
        az=az,
        hosts=len(ps),
        instances=sum(len(p.flavors) for p in ps),
        ram_used_mb=sum(u for u, _ in rams),
        ram_capacity_mb=sum(c for _, c in rams),
        vcpus_used=sum(u for u, _ in cpus),
        vcpus_capacity=sum(c for _, c in cpus),
        largest_free_ram_mb=max((c - u for u, c in rams), default=0.0),
        largest_free_vcpus=max((c - u for u, c in cpus), default=0.0),
    )


def public_from_providers(az: PublicAz, providers: Iterable[ProviderView]) -> PublicUsage:
    ps = list(providers)
    prices = [az.price(f) for p in ps for f in p.flavors]
    return PublicUsage(
        az=az.name,
        hosts=len(ps),
        instances=len(prices),
        vcpus=sum(p.used_capacity("VCPU")[0] for p in ps),
        ram_mb=sum(p.used_capacity("MEMORY_MB")[0] for p in ps),
        hourly_cost=round(sum(az.max_price if x is None else x for x in prices), 6),
    )


def _provider_view(conn: Any, rp: Any, flavors_by_host: Mapping[str, list[str]]) -> ProviderView:
    inventories = {
        i.resource_class: {
            "total": i.total,
            "reserved": i.reserved or 0,
            "allocation_ratio": i.allocation_ratio or 1.0,
        }
        for i in conn.placement.resource_provider_inventories(rp)
    }
    usages = conn.placement.fetch_resource_provider_usages(rp).usages or {}
    return ProviderView(rp.name, inventories, usages, tuple(flavors_by_host.get(rp.name, ())))


def _providers_by_az(conn: Any, azs: set[str]) -> dict[str, dict[str, Any]]:
    """AZ -> {provider uuid: provider}, through each AZ aggregate's Placement mirror."""
    out: dict[str, dict[str, Any]] = {az: {} for az in azs}
    for agg in conn.compute.aggregates():
        az = (agg.metadata or {}).get("availability_zone") or agg.availability_zone
        if az in out:
            for rp in conn.placement.resource_providers(member_of=agg.uuid):
                out[az][rp.id] = rp
    return out


def _flavors_by_host(conn: Any) -> dict[str, list[str]]:
    """host -> flavor name of each server on it (the count and the cost)."""
    out: dict[str, list[str]] = {}
    for s in conn.compute.servers(all_projects=True):
        if s.compute_host:
            out.setdefault(s.compute_host, []).append(str(s.flavor.original_name or s.flavor.name))
    return out


def load_from_cloud(conn: Any, policy: Policy) -> Load:
    """The load from Placement (inventories, usages per AZ aggregate) and Nova (servers).

    `conn` is an openstacksdk connection with admin rights; calls are blocking.
    """
    providers = _providers_by_az(conn, {policy.local_az, *(a.name for a in policy.public_azs)})
    flavors = _flavors_by_host(conn)

    def views(az: str) -> list[ProviderView]:
        return [_provider_view(conn, rp, flavors) for rp in providers[az].values()]

    local = local_from_providers(policy.local_az, views(policy.local_az))
    public = {az.name: public_from_providers(az, views(az.name)) for az in policy.public_azs}
    return Load(local, public)

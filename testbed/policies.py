"""Policies, loads and host-state stand-ins, shared by the policy tests and the benchmarks.

The host states are plain dataclasses with the attributes of nova's HostState that the policy
reads (nova is not importable in the project venv); the real HostState is exercised by the
integration test inside the real nova-scheduler.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from azfed.policy import Load, LocalLoad, PublicUsage, parse_policy
from azfed.policy.model import Policy

BASE: dict[str, Any] = {
    "version": 1,
    "local_az": "local",
    "public_azs": [
        {
            "name": "aws",
            "provider": "ec2",
            "priority": 1,
            "caps": {"instances": 10, "vcpus": 20, "ram_mb": 20480, "hourly_cost": 1.0},
            "prices": {"small": 0.1, "big": 0.4},
        },
        {
            "name": "os",
            "provider": "openstack",
            "priority": 2,
            "caps": {"instances": 5},
            "prices": {"small": 0.05, "big": 0.2},
        },
    ],
    "burst": {"memory_used_pct": 80, "instances": 10},
    "return": {"memory_used_pct": 60, "instances": 6},
    "cooldown": {"return_after_s": 300, "burst_after_s": 60},
    "flavors": {"allow": ["small", "big", "other"], "deny": ["*.gpu", "other"]},
    "explicit_az": "honour",
    "fallback": {
        "capacity_backoff": {"initial_s": 120, "max_s": 960},
        "when_public_unavailable": "local",
    },
}


def policy_doc(**changes: Any) -> dict[str, Any]:
    """BASE with top-level keys replaced."""
    doc = copy.deepcopy(BASE)
    doc.update(changes)
    return doc


def make_policy(**changes: Any) -> Policy:
    return parse_policy(policy_doc(**changes), "test-policy")


def local(mem_pct: float = 10.0, instances: int = 1, free_mb: float | None = None) -> LocalLoad:
    """A one-host local AZ of 10,000 MB at `mem_pct` used."""
    used = 100.0 * mem_pct
    return LocalLoad(
        az="local",
        hosts=1,
        instances=instances,
        ram_used_mb=used,
        ram_capacity_mb=10_000.0,
        vcpus_used=1.0,
        vcpus_capacity=100.0,
        largest_free_ram_mb=10_000.0 - used if free_mb is None else free_mb,
        largest_free_vcpus=99.0,
    )


def load(mem_pct: float = 10.0, instances: int = 1, **public: PublicUsage) -> Load:
    return Load(local(mem_pct, instances), public)


@dataclass
class Agg:
    metadata: dict[str, str]


@dataclass
class Host:
    """The attributes of nova.scheduler.host_manager.HostState that the policy reads."""

    host: str
    az: str
    total_usable_ram_mb: float = 8192
    free_ram_mb: float = 7680  # 512 reserved
    ram_allocation_ratio: float | None = 1.0
    vcpus_total: float = 10
    vcpus_used: float = 0
    cpu_allocation_ratio: float | None = 4.0
    num_instances: int = 0
    instances: dict[str, Any] = field(default_factory=dict)
    nodename: str = ""
    aggregates: list[Agg] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.nodename = self.nodename or self.host
        self.aggregates = [Agg({"availability_zone": self.az})]

    def boot(self, uuid: str, ram_mb: int = 512, vcpus: int = 1) -> None:
        self.free_ram_mb -= ram_mb
        self.vcpus_used += vcpus
        self.num_instances += 1
        self.instances[uuid] = object()

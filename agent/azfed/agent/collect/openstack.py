"""Public-OpenStack collector: the federated servers, their state and addresses.

One paginated call a cycle: Nova's server list filtered by the `azfed-` name prefix the backend
gives every burst server (agent/clouds/openstack.py), confirmed by the UUID in its metadata.
openstacksdk blocks, so the call runs in a worker thread behind a semaphore.

Usage is not collected here: a public OpenStack exposes no per-server usage to tenants through
a portable API (server diagnostics are admin-only by default policy, and few public clouds
offer Gnocchi to tenants). The guest collector covers usage for images that bake the agent in.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from typing import Any

import structlog
from azfed.agent.collect.ec2 import UUID
from azfed.agent.collect.sample import Instance, Observation, State
from azfed.agent.health import AgentMetrics
from azfed.config import AzfedConfig, OpenStackSection

log = structlog.get_logger(__name__)

UUID_TAG = "azfed:instance-uuid"
NAME_FILTER = "^azfed-"
# Nova's server status -> the wire's instance state
STATES: dict[str, State] = {
    "BUILD": "pending",
    "REBUILD": "pending",
    "ACTIVE": "running",
    "REBOOT": "running",
    "HARD_REBOOT": "running",
    "RESIZE": "running",
    "VERIFY_RESIZE": "running",
    "MIGRATING": "running",
    "PASSWORD": "running",
    "SHUTOFF": "stopped",
    "SUSPENDED": "stopped",
    "PAUSED": "stopped",
    "SHELVED": "stopped",
    "SHELVED_OFFLOADED": "stopped",
    "DELETED": "terminated",
    "SOFT_DELETED": "terminated",
    "ERROR": "error",
}


def addresses(addrs: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Fixed addresses are private, floating ones public (Nova's OS-EXT-IPS:type)."""
    private: list[str] = []
    public: list[str] = []
    for entries in addrs.values():
        for e in entries:
            (public if e.get("OS-EXT-IPS:type") == "floating" else private).append(e["addr"])
    return tuple(private), tuple(public)


def instance_from(server: Any, now: dt.datetime) -> Instance | None:
    uuid = str((server.metadata or {}).get(UUID_TAG, ""))
    if not UUID.match(uuid):
        return None
    private, public = addresses(server.addresses or {})
    flavor = server.flavor or {}
    launched = server.launched_at
    return Instance(
        instance_uuid=uuid.lower(),
        provider="openstack",
        remote_id=server.id,
        state=STATES.get(str(server.status), "unknown"),
        observed_at=now,
        private_ips=private,
        public_ips=public,
        instance_type=flavor.get("original_name") or flavor.get("name"),
        az=server.availability_zone,
        launched_at=dt.datetime.fromisoformat(launched).replace(tzinfo=dt.timezone.utc)
        if launched
        else None,
    )


class OpenStackCollector:
    """Lists the burst servers of one public OpenStack cloud (clouds.yaml entry)."""

    name = "openstack"

    def __init__(self, cfg: OpenStackSection, metrics: AgentMetrics) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self._slots = asyncio.Semaphore(cfg.concurrency)
        self._conn: Any = None

    @classmethod
    def from_config(cls, cfg: AzfedConfig, metrics: AgentMetrics) -> OpenStackCollector:
        cfg.require("openstack")
        assert cfg.openstack is not None
        return cls(cfg.openstack, metrics)

    def checkpoint(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        return None

    async def open(self) -> None:
        import openstack

        def connect() -> Any:
            # keystoneauth's own retries cover refused connections; the timeout bounds a call
            return openstack.connect(
                cloud=self.cfg.cloud, region_name=self.cfg.region, api_timeout=self.cfg.timeout_s
            )

        self._conn = await asyncio.to_thread(connect)

    async def close(self) -> None:
        if self._conn is not None:
            await asyncio.to_thread(self._conn.close)

    async def collect(self) -> Observation:
        now = dt.datetime.now(dt.timezone.utc)
        async with self._slots:
            servers = await asyncio.to_thread(self._list)
        obs = Observation()
        for server in servers:
            inst = instance_from(server, now)
            if inst is not None:
                obs.instances.append(inst)
        self.metrics.instances.labels(self.name).set(len(obs.instances))
        return obs

    def _list(self) -> list[Any]:
        self.metrics.api_calls.labels("compute", "ListServers").inc()
        return list(self._conn.compute.servers(details=True, name=NAME_FILTER))

"""Public-OpenStack collector: the federated servers, their state and addresses.

One paginated call a cycle: Nova's server list filtered by the `azfed-` name prefix the backend
gives every burst server (azfed/clouds/openstack.py), confirmed by the UUID in its metadata.
openstacksdk blocks, so the call runs in a worker thread (`azfed.sdk`).

Usage is not collected here: a public OpenStack exposes no per-server usage to tenants through
a portable API (server diagnostics are admin-only by default policy, and few public clouds
offer Gnocchi to tenants). The guest collector covers usage for images that bake the agent in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from azfed.agent.collect.sample import Emit, Instance, Observation
from azfed.agent.health import AgentMetrics
from azfed.clouds import NOVA_STATUS_STATES, UUID_TAG
from azfed.config import AzfedConfig, OpenStackSection
from azfed.sdk import SdkConnection, connector
from azfed.wire import is_uuid
from keystoneauth1 import exceptions as ks_exc
from openstack import exceptions as os_exc

log = structlog.get_logger(__name__)

NAME_FILTER = "^azfed-"


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
    if not is_uuid(uuid):
        return None
    private, public = addresses(server.addresses or {})
    flavor = server.flavor or {}
    launched = server.launched_at
    return Instance(
        instance_uuid=uuid.lower(),
        provider="openstack",
        remote_id=server.id,
        state=NOVA_STATUS_STATES.get(str(server.status), "unknown"),
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
    """Lists the burst servers of one public OpenStack cloud (clouds.yaml entry).

    `connect` builds the openstacksdk Connection (by default from `[openstack]`). One cycle is
    one call and cycles never overlap, so the collector needs one worker thread, no more.
    """

    name = "openstack"

    def __init__(
        self,
        cfg: OpenStackSection,
        metrics: AgentMetrics,
        connect: Callable[[], Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics
        # keystoneauth's own retries cover refused connections; the timeout bounds a call
        connect = connect or connector(cfg.cloud, region=cfg.region, timeout_s=cfg.timeout_s)
        self._sdk = SdkConnection(connect, concurrency=1)

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
        await self._sdk.connection()

    async def close(self) -> None:
        await self._sdk.close()

    async def stream(self, emit: Emit) -> None:
        # one ListServers answer is the whole cycle: one part
        await emit(await self.collect())

    async def collect(self) -> Observation:
        now = dt.datetime.now(dt.timezone.utc)
        self.metrics.api_calls.labels("compute", "ListServers").inc()
        try:
            servers = await self._sdk.run(_list_servers)
        except (os_exc.SDKException, ks_exc.ClientException):
            # keystoneauth has retried what it retries: this call failed for good
            self.metrics.api_errors.labels("compute", "ListServers").inc()
            raise
        obs = Observation()
        for server in servers:
            inst = instance_from(server, now)
            if inst is not None:
                obs.instances.append(inst)
        self.metrics.instances.labels(self.name).set(len(obs.instances))
        return obs


def _list_servers(conn: Any) -> list[Any]:
    return list(conn.compute.servers(details=True, name=NAME_FILTER))

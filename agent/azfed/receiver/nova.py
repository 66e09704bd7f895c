"""The receiver's Nova calls, through openstacksdk from asyncio (`azfed.sdk`): each runs in a
worker thread, and at most `concurrency` hit Nova at once.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from azfed.sdk import SdkConnection

T = TypeVar("T")


@dataclass(frozen=True)
class ServerFacts:
    """What the receiver needs to know of a Nova server (Gnocchi attributes, reconciliation)."""

    uuid: str
    name: str
    flavor_id: str
    flavor_name: str
    host: str
    image_ref: str
    az: str
    project_id: str
    user_id: str
    status: str
    created_at: str
    metadata: dict[str, str]
    launched_at: str = ""


def _facts(server: Any) -> ServerFacts:
    flavor = server.flavor or {}
    image = server.image or {}
    return ServerFacts(
        uuid=server.id,
        name=server.name or "",
        # Nova embeds the flavor without its id since microversion 2.47 (it has original_name
        # then): NovaClient looks it up. openstacksdk's Flavor answers `id` with the name when
        # the id is absent, so `id` is read only from an embedding that has one.
        flavor_id="" if flavor.get("original_name") else str(flavor.get("id") or ""),
        flavor_name=str(flavor.get("original_name") or flavor.get("name") or ""),
        host=server.compute_host or server.hypervisor_hostname or "",
        image_ref=str(image.get("id") or ""),
        az=server.availability_zone or "",
        project_id=server.project_id or "",
        user_id=server.user_id or "",
        status=server.status or "",
        created_at=server.created_at or "",
        metadata=dict(server.metadata or {}),
        launched_at=server.launched_at or "",
    )


class NovaClient:
    """Nova calls the receiver makes. `connect` builds an openstacksdk Connection; it is
    called lazily, in a worker thread, because it may authenticate against Keystone."""

    def __init__(
        self, connect: Callable[[], Any], *, concurrency: int = 8, cache_ttl_s: float = 300.0
    ) -> None:
        self._sdk = SdkConnection(connect, concurrency=concurrency)
        self._ttl = cache_ttl_s
        self._cache: dict[str, tuple[float, ServerFacts | None]] = {}
        self._flavor_ids: dict[str, tuple[float, str]] = {}

    async def _call(self, fn: Callable[[Any], T]) -> T:
        return await self._sdk.run(fn)

    async def ping(self) -> None:
        """Raise if Nova does not answer (one cheap authenticated call)."""
        await self._call(lambda c: next(iter(c.compute.flavors(limit=1)), None))

    async def token(self) -> str:
        """A valid Keystone token of the receiver's session."""
        token: str = await self._call(lambda c: c.session.get_token())
        return token

    async def server(self, uuid: str, *, fresh: bool = False) -> ServerFacts | None:
        """The server's facts, or None if Nova has no such server; cached for a while."""
        hit = self._cache.get(uuid)
        if hit is not None and not fresh and time.monotonic() - hit[0] < self._ttl:
            return hit[1]
        facts = await self._call(lambda c: _get_server(c, uuid))
        if facts is not None and not facts.flavor_id and facts.flavor_name:
            facts = dataclasses.replace(facts, flavor_id=await self.flavor_id(facts.flavor_name))
        self._cache[uuid] = (time.monotonic(), facts)
        return facts

    async def flavor_id(self, name: str) -> str:
        """The id of the flavor named `name` ("" if Nova has none by that name now: deleted);
        cached like servers, as flavors are far fewer than servers."""
        hit = self._flavor_ids.get(name)
        if hit is not None and time.monotonic() - hit[0] < self._ttl:
            return hit[1]
        found = await self._call(lambda c: c.compute.find_flavor(name, ignore_missing=True))
        flavor_id = str(found.id) if found is not None else ""
        self._flavor_ids[name] = (time.monotonic(), flavor_id)
        return flavor_id

    async def set_metadata(self, uuid: str, changed: dict[str, str]) -> bool:
        """Set (merge) these metadata keys on the server. False if Nova no longer has it
        (deleted since it was cached): the cache forgets it, so the next report looks again."""
        if not await self._call(lambda c: _set_metadata(c, uuid, changed)):
            self._cache.pop(uuid, None)
            return False
        hit = self._cache.get(uuid)
        if hit is not None and hit[1] is not None:
            merged = {**hit[1].metadata, **changed}
            facts = ServerFacts(**{**hit[1].__dict__, "metadata": merged})
            self._cache[uuid] = (hit[0], facts)
        return True

    async def power_update(self, uuid: str, tag: str) -> bool:
        """Send Nova's power-update event (POWER_OFF / POWER_ON, microversion 2.76): the
        server's compute host brings Nova's power state to the cloud's. False if Nova has no
        such server."""
        self._cache.pop(uuid, None)  # its status is about to change
        return await self._call(lambda c: _power_update(c, uuid, tag))

    async def servers_in(self, azs: tuple[str, ...]) -> list[ServerFacts]:
        """Every server (all projects) whose availability zone is one of `azs`."""
        servers = await self._call(
            lambda c: list(c.compute.servers(details=True, all_projects=True))
        )
        return [f for f in map(_facts, servers) if f.az in azs]

    async def close(self) -> None:
        await self._sdk.close()


def _set_metadata(conn: Any, uuid: str, changed: dict[str, str]) -> bool:
    from openstack import exceptions

    try:
        conn.compute.set_server_metadata(uuid, **changed)
    except exceptions.NotFoundException:
        return False
    return True


# the external event that tells Nova a server's power changed outside it (Nova's API 2.76)
POWER_UPDATE_MICROVERSION = "2.76"


def _power_update(conn: Any, uuid: str, tag: str) -> bool:
    event = {"name": "power-update", "server_uuid": uuid, "tag": tag}
    resp = conn.compute.post(
        "/os-server-external-events",
        json={"events": [event]},
        microversion=POWER_UPDATE_MICROVERSION,
    )
    if resp.status_code == 404:  # Nova knows none of the events' servers
        return False
    resp.raise_for_status()
    return True


def _get_server(conn: Any, uuid: str) -> ServerFacts | None:
    from openstack import exceptions

    try:
        server = conn.compute.get_server(uuid)
    except exceptions.NotFoundException:
        return None
    return _facts(server)

"""The proxy host's engine, without Nova: mapping, one owned event loop, the backend calls.

`azfed.nova.driver.FederationDriver` is the thin Nova adapter over this. Everything here
imports only the standard library, aiohttp and `agent.*`, so it runs (and is tested) outside
Nova. Nova's compute manager calls the driver from its own threads and blocks; the backends are
async. `LoopThread` bridges the two: one event loop in one thread, owned by the driver, and
each blocking call submits a coroutine to it with a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import datetime as dt
import threading
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import structlog
from azfed.clouds import (
    CloudBackend,
    NetworkAttachment,
    RemoteInstance,
    RemoteState,
    SpawnRequest,
    backend_class,
)
from azfed.errors import ConfigError, NotFoundError, PermanentError, Problem, QuotaError

log = structlog.get_logger(__name__)
T = TypeVar("T")

# the image property that names the public image, per provider; the config has a fallback
IMAGE_PROPERTY = {"ec2": "azfed_ec2_ami", "openstack": "azfed_public_image"}


def parse_flavor_map(raw: Mapping[str, str] | str) -> dict[str, str]:
    """`"m1.tiny:t3.micro,m1.small:t3.small"` (or a dict) -> {nova flavor: provider type}."""
    if isinstance(raw, str):
        pairs = [p.strip() for p in raw.split(",") if p.strip()]
        items: list[tuple[str, str]] = []
        for pair in pairs:
            nova, sep, remote = pair.partition(":")
            if not sep or not nova.strip() or not remote.strip():
                raise ConfigError(
                    "[azfed]",
                    [Problem("flavor_map", pair, "expected NOVA_FLAVOR:PROVIDER_TYPE")],
                )
            items.append((nova.strip(), remote.strip()))
        return dict(items)
    return {str(k): str(v) for k, v in raw.items()}


@dataclass(frozen=True)
class Capacity:
    """What the proxy host offers Placement: the public AZ's burst allowance."""

    vcpus: int = 1000
    memory_mb: int = 4 * 1024 * 1024
    disk_gb: int = 100_000
    max_instances: int = 1000


@dataclass(frozen=True)
class ProxySettings:
    """Everything the proxy host needs besides the backend's own settings."""

    provider: str
    flavor_map: Mapping[str, str]
    default_image: str | None = None
    capacity: Capacity = field(default_factory=Capacity)
    receiver_url: str | None = None
    receiver_max_age_s: float = 120.0
    receiver_timeout_s: float = 2.0
    spawn_timeout_s: float = 900.0
    call_timeout_s: float = 600.0


def decode_user_data(raw: str | None) -> bytes | None:
    """Nova keeps user data base64-encoded; the backends want the bytes."""
    if not raw:
        return None
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as err:
        raise PermanentError(f"the instance's user data is not valid base64: {err}") from err


class LoopThread:
    """One asyncio event loop running in a daemon thread; blocking callers submit to it."""

    def __init__(self, name: str = "azfed-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run `coro` on the loop and wait for it; cancel it if the deadline passes."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise PermanentError(f"the cloud call did not finish within {timeout:.0f}s") from None

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


class ProxyHost:
    """The proxy compute host's operations, by Nova instance UUID, as blocking calls."""

    def __init__(self, settings: ProxySettings, backend: CloudBackend) -> None:
        self.settings = settings
        self.backend = backend
        self.loop = LoopThread()
        self._http: aiohttp.ClientSession | None = None

    @classmethod
    def create(cls, settings: ProxySettings, backend_settings: Any) -> ProxyHost:
        backend = backend_class(settings.provider)(backend_settings)
        return cls(settings, backend)

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self.loop.run(coro, timeout or self.settings.call_timeout_s)

    def close(self) -> None:
        self._run(self._aclose(), 30)
        self.loop.stop()

    async def _aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
        await self.backend.close()

    # --- mapping -------------------------------------------------------------------------------

    def request_for(
        self,
        *,
        instance_uuid: str,
        project_id: str | None,
        name: str,
        flavor: str,
        image_properties: Mapping[str, Any],
        user_data: str | None,
        instance_name: str | None = None,
        network: NetworkAttachment | None = None,
    ) -> SpawnRequest:
        """Translate a Nova boot into provider terms; a missing mapping is a clear error."""
        itype = self.settings.flavor_map.get(flavor)
        if itype is None:
            known = ", ".join(sorted(self.settings.flavor_map)) or "none"
            raise PermanentError(
                f"flavor {flavor!r} has no mapping in nova.conf [azfed] flavor_map "
                f"(mapped: {known})"
            )
        prop = IMAGE_PROPERTY.get(self.settings.provider, "azfed_image")
        image = image_properties.get(prop) or self.settings.default_image
        if not image:
            raise PermanentError(
                f"the image has no {prop!r} property and nova.conf [azfed] default_image "
                "is not set: tag the image with the public image to use"
            )
        return SpawnRequest(
            instance_uuid=instance_uuid,
            project_id=project_id,
            name=name,
            instance_type=itype,
            image=str(image),
            user_data=decode_user_data(user_data),
            instance_name=instance_name,
            network=network,
        )

    # --- lifecycle -----------------------------------------------------------------------------

    def spawn(self, request: SpawnRequest) -> RemoteInstance:
        return self._run(self._spawn(request), self.settings.spawn_timeout_s)

    async def _spawn(self, request: SpawnRequest) -> RemoteInstance:
        live = await self.backend.list_all()
        others = [r for r in live if r.instance_uuid != request.instance_uuid]
        if len(others) >= self.settings.capacity.max_instances:
            raise QuotaError(
                f"the public AZ's burst cap of {self.settings.capacity.max_instances} "
                "instances is reached: raise [azfed] max_instances or free instances"
            )
        try:
            return await self.backend.spawn(request)
        except BaseException:
            # the backends clean up what they created; this catches what they could not see
            # (e.g. cancelled between RunInstances and its answer)
            await asyncio.shield(self._remove(request.instance_uuid))
            raise

    async def _remove(self, instance_uuid: str) -> bool:
        remote = await self.backend.find(instance_uuid)
        if remote is None:
            return False
        await self.backend.terminate(remote.remote_id)
        return True

    def destroy(self, instance_uuid: str) -> bool:
        """Terminate the remote instance; False if there was none (already gone is fine)."""
        return self._run(self._remove(instance_uuid))

    def find(self, instance_uuid: str) -> RemoteInstance | None:
        return self._run(self.backend.find(instance_uuid))

    def _require(self, instance_uuid: str) -> RemoteInstance:
        remote = self.find(instance_uuid)
        if remote is None:
            raise NotFoundError(f"no public-cloud instance is tagged with {instance_uuid}")
        return remote

    def stop(self, instance_uuid: str) -> None:
        self._run(self.backend.stop(self._require(instance_uuid).remote_id))

    def start(self, instance_uuid: str) -> None:
        self._run(self.backend.start(self._require(instance_uuid).remote_id))

    def reboot(self, instance_uuid: str, hard: bool) -> None:
        remote = self._require(instance_uuid)
        if remote.state is RemoteState.STOPPED or hard:
            if remote.state is not RemoteState.STOPPED:
                self._run(self.backend.stop(remote.remote_id))
            self._run(self.backend.start(remote.remote_id))
        else:
            self._run(self.backend.reboot(remote.remote_id))

    def resize(self, instance_uuid: str, flavor: str) -> None:
        itype = self.settings.flavor_map.get(flavor)
        if itype is None:
            raise PermanentError(f"flavor {flavor!r} has no mapping in [azfed] flavor_map")
        self._run(self.backend.resize(self._require(instance_uuid).remote_id, itype))

    def console_output(self, instance_uuid: str) -> str:
        return self._run(self.backend.console_output(self._require(instance_uuid).remote_id))

    def list_all(self) -> list[RemoteInstance]:
        return self._run(self.backend.list_all())

    # --- state ---------------------------------------------------------------------------------

    def state(self, instance_uuid: str) -> RemoteState | None:
        """The instance's state: from the agent's report when fresh, else from the cloud API.

        None means the cloud has no live instance for this UUID.
        """
        return self._run(self._state(instance_uuid))

    async def _state(self, instance_uuid: str) -> RemoteState | None:
        reported = await self.reported_state(instance_uuid)
        if reported is not None:
            return reported
        remote = await self.backend.find(instance_uuid)
        return remote.state if remote is not None else None

    async def reported_state(
        self, instance_uuid: str, now: dt.datetime | None = None
    ) -> RemoteState | None:
        """What the receiver last heard from the agent, if it is recent enough to trust."""
        url = self.settings.receiver_url
        if not url:
            return None
        body = await self._fetch_report(f"{url.rstrip('/')}/v1/instances/{instance_uuid}")
        if body is None:
            return None
        return fresh_state(body, self.settings.receiver_max_age_s, now or _utcnow())

    async def _fetch_report(self, url: str) -> dict[str, Any] | None:
        if self._http is None:
            timeout = aiohttp.ClientTimeout(total=self.settings.receiver_timeout_s)
            self._http = aiohttp.ClientSession(timeout=timeout)
        try:
            async with self._http.get(url) as resp:
                if resp.status != 200:
                    return None
                body: dict[str, Any] = await resp.json()
                return body
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            # the receiver is an optimisation: without it the cloud API answers
            log.info("proxy.receiver_unavailable", url=url, error=str(err))
            return None


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def fresh_state(body: Mapping[str, Any], max_age_s: float, now: dt.datetime) -> RemoteState | None:
    """The reported state if `observed_at` is at most `max_age_s` old, else None."""
    try:
        observed = dt.datetime.fromisoformat(str(body["observed_at"]).replace("Z", "+00:00"))
        state = RemoteState(str(body["state"]))
    except (KeyError, ValueError):
        return None
    if observed.tzinfo is None:
        observed = observed.replace(tzinfo=dt.timezone.utc)
    age = (now - observed).total_seconds()
    return state if 0 <= age <= max_age_s else None

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
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import structlog
from azfed.clouds import (
    UUID_TAG,
    CloudBackend,
    NetworkAttachment,
    RemoteInstance,
    RemoteState,
    SpawnRequest,
    backend_class,
)
from azfed.errors import (
    AzfedError,
    ConfigError,
    NotFoundError,
    PermanentError,
    Problem,
    QuotaError,
)

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
    # CreateImage of a large root volume, then the wait for `available` (the backend bounds it)
    snapshot_timeout_s: float = 2400.0


class ReportUnavailable(AzfedError):
    """The receiver has no report of the instance, or does not answer: the message says which
    and what to check (the agent in the public cloud, or the receiver)."""


@dataclass(frozen=True)
class Reading:
    """One meter's newest value, as the receiver reads it back (GET /v1/instances/{id}/usage)."""

    resource_type: str
    device: str | None
    meter: str
    value: float


@dataclass(frozen=True)
class Report:
    """What the receiver knows of one instance: the agent's last report and its usage."""

    state: RemoteState
    remote_id: str
    observed_at: dt.datetime
    readings: tuple[Reading, ...] = ()

    def value(self, meter: str, device: str | None = None) -> float | None:
        found = [r.value for r in self.readings if r.meter == meter and r.device == device]
        return found[0] if found else None

    def devices(self, resource_type: str) -> list[str]:
        names = {r.device for r in self.readings if r.resource_type == resource_type}
        return sorted(d for d in names if d)


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
        if not self._thread.is_alive():
            self.loop.close()


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

    def hibernate(self, instance_uuid: str) -> None:
        self._run(self.backend.hibernate(self._require(instance_uuid).remote_id))

    # --- images --------------------------------------------------------------------------------

    def snapshot(self, instance_uuid: str, name: str, description: str) -> str:
        """The public image (AMI) of the instance, once usable; none is left on failure."""
        remote = self._require(instance_uuid)
        return self._run(
            self.backend.create_image(
                remote.remote_id, name, description, {UUID_TAG: instance_uuid}
            ),
            self.settings.snapshot_timeout_s,
        )

    def delete_image(self, image_id: str) -> None:
        self._run(self.backend.delete_image(image_id))

    # --- state ---------------------------------------------------------------------------------

    def state(self, instance_uuid: str) -> RemoteState | None:
        """The instance's state: from the agent's report when fresh, else from the cloud API.

        TERMINATED: the cloud still lists the instance, terminated (EC2 does for about an
        hour); None: the cloud has no instance for this UUID.
        """
        return self._run(self._state(instance_uuid))

    async def _state(self, instance_uuid: str) -> RemoteState | None:
        reported = await self.reported_state(instance_uuid)
        if reported is not None:
            return reported
        remote = await self.backend.find(instance_uuid) or await self.backend.find_gone(
            instance_uuid
        )
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

    def report(self, instance_uuid: str) -> Report:
        """The agent's last report of the instance and its usage, from the receiver."""
        return self._run(self._report(instance_uuid))

    async def _report(self, instance_uuid: str) -> Report:
        url = self.settings.receiver_url
        if not url:
            raise ReportUnavailable(
                "nova.conf [azfed] receiver_url is not set: the agent's reports are read "
                "through the azfed receiver"
            )
        base = f"{url.rstrip('/')}/v1/instances/{instance_uuid}"
        status, row = await self._get_json(base)
        if status == 404:
            raise ReportUnavailable(
                f"no agent has reported instance {instance_uuid} to the receiver at {url} yet: "
                "check that the agent in the public cloud runs and reaches the receiver"
            )
        if status != 200:
            raise ReportUnavailable(f"the receiver at {url} answered {status} for {base}")
        status, usage = await self._get_json(f"{base}/usage")
        if status != 200:
            # the state is known without the usage store (Gnocchi): say so, keep the state
            log.warning("proxy.usage_unavailable", instance_uuid=instance_uuid, status=status)
            usage = {}
        return _report_of(row, usage.get("usage", ()))

    async def _get_json(self, url: str) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) of GET `url`; a receiver that does not answer is an error."""
        http = self._session()
        try:
            async with http.get(url) as resp:
                body = await resp.json() if resp.content_type == "application/json" else {}
                return resp.status, body
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            raise ReportUnavailable(
                f"the receiver at {url} does not answer ({type(err).__name__}: {err}): "
                "check that it runs and that nova.conf [azfed] receiver_url names it"
            ) from err

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            timeout = aiohttp.ClientTimeout(total=self.settings.receiver_timeout_s)
            self._http = aiohttp.ClientSession(timeout=timeout)
        return self._http

    async def _fetch_report(self, url: str) -> dict[str, Any] | None:
        try:
            async with self._session().get(url) as resp:
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


def _when(text: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)


def _reading(raw: Mapping[str, Any]) -> Reading:
    return Reading(
        resource_type=str(raw["resource_type"]),
        device=raw.get("device"),
        meter=str(raw["meter"]),
        value=float(raw["value"]),
    )


def _report_of(row: Mapping[str, Any], usage: Iterable[Mapping[str, Any]]) -> Report:
    try:
        return Report(
            state=RemoteState(str(row["state"])),
            remote_id=str(row["remote_id"]),
            observed_at=_when(str(row["observed_at"])),
            readings=tuple(_reading(u) for u in usage),
        )
    except (KeyError, ValueError) as err:
        raise ReportUnavailable(
            f"the receiver's report is not what the driver reads: {err}"
        ) from err

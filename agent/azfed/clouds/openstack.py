"""The public-OpenStack backend: burst instances on another OpenStack cloud via openstacksdk.

openstacksdk is blocking, so every call runs in a worker thread through `azfed.sdk`, at most
`concurrency` at once: the fan-out to the public cloud is bounded however many Nova requests
arrive at once. keystoneauth
already retries refused connections; throttling (429) and unavailability (503) are retried here
with full-jitter backoff, because every call below is idempotent.

The remote server is named `azfed-<nova uuid>` and carries the UUID and project in its metadata,
so it is found again by name (one filtered API call) and confirmed by metadata.
"""

from __future__ import annotations

import asyncio
import base64
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from azfed.clouds import (
    NOVA_STATUS_STATES,
    UUID_TAG,
    CloudUnavailableError,
    HibernationUnsupported,
    RemoteInstance,
    RemoteState,
    SpawnRequest,
)
from azfed.errors import (
    CapacityError,
    CloudError,
    NotFoundError,
    PermanentError,
    QuotaError,
    ThrottledError,
)
from azfed.sdk import API_TIMEOUT_S, SdkConnection, connector
from keystoneauth1 import exceptions as ks_exc
from openstack import exceptions as os_exc
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

log = structlog.get_logger(__name__)
T = TypeVar("T")

_STATES = {status: RemoteState(state) for status, state in NOVA_STATUS_STATES.items()}


@dataclass(frozen=True)
class OpenStackSettings:
    """The public cloud: a clouds.yaml entry (`cloud`) or explicit `auth` keyword arguments."""

    cloud: str | None = None
    auth: Mapping[str, str] = field(default_factory=dict)
    network: str | None = None
    key_name: str | None = None
    security_groups: tuple[str, ...] = ()
    availability_zone: str | None = None
    concurrency: int = 4
    timeout_s: float = API_TIMEOUT_S
    wait_s: float = 300.0
    retries: int = 3
    backoff_s: float = 1.0


def remote_name(instance_uuid: str) -> str:
    return f"azfed-{instance_uuid}"


def map_error(err: Exception, action: str, subject: str) -> CloudError:
    """openstacksdk/keystoneauth errors onto azfed's hierarchy, in operator terms."""
    kw = {"provider": "openstack"}
    if isinstance(err, ks_exc.ConnectionError):
        return CloudUnavailableError(f"public OpenStack did not answer {action}: {err}", **kw)
    if isinstance(err, os_exc.ResourceNotFound):
        return NotFoundError(f"public OpenStack {action}: {subject} not found", **kw)
    status = getattr(err, "status_code", None)
    text = str(err)
    if status == 429:
        return ThrottledError(f"public OpenStack throttled {action}: {text}", code="429", **kw)
    if status == 503:
        return CloudUnavailableError(f"public OpenStack unavailable: {text}", code="503", **kw)
    if status in (403, 413) and "quota" in text.lower():
        return QuotaError(
            f"public OpenStack quota reached for {subject}: {text}; "
            "raise the project's quota there or free instances",
            code=str(status),
            **kw,
        )
    return PermanentError(
        f"public OpenStack refused {action} for {subject}: {text}",
        code=str(status) if status else "",
        **kw,
    )


def fault_error(server: Any, subject: str) -> CloudError:
    """The error a server that went to ERROR stands for (its fault says why)."""
    fault = getattr(server, "fault", None) or {}
    message = str(fault.get("message", "no fault recorded"))
    kw = {"provider": "openstack", "code": str(fault.get("code", "ERROR"))}
    if "no valid host" in message.lower():
        return CapacityError(f"public OpenStack has no capacity for {subject}: {message}", **kw)
    return PermanentError(f"public OpenStack failed to build {subject}: {message}", **kw)


def to_remote(server: Any) -> RemoteInstance:
    meta = dict(server.metadata or {})
    private, public = _addresses(server.addresses or {})
    flavor = server.flavor or {}
    image = server.image or {}
    return RemoteInstance(
        remote_id=server.id,
        instance_uuid=meta.get(UUID_TAG),
        state=_STATES.get(str(server.status), RemoteState.UNKNOWN),
        instance_type=str(flavor.get("original_name") or flavor.get("name") or ""),
        image=image.get("id") if isinstance(image, Mapping) else None,
        private_ip=private,
        public_ip=public,
        zone=server.availability_zone,
        tags=meta,
    )


def _addresses(addresses: Mapping[str, Any]) -> tuple[str | None, str | None]:
    private = public = None
    for entries in addresses.values():
        for a in entries:
            if a.get("OS-EXT-IPS:type") == "floating":
                public = public or a.get("addr")
            else:
                private = private or a.get("addr")
    return private, public


def _own_ports(conn: Any, remote_id: str, server_name: str | None) -> set[str]:
    """The ids of the public ports azfed made for this server: attached to it, or (a server
    that failed before its port was attached) named like it."""
    found = {p.id for p in conn.network.ports(device_id=remote_id) if p.name.startswith("azfed-")}
    if server_name and server_name.startswith("azfed-"):
        found |= {p.id for p in conn.network.ports(name=server_name)}
    return found


def _lookup(kind: str, name: str, finder: Callable[..., Any]) -> Any:
    """A flavor, image or network by name or id; a missing one is a configuration mistake."""
    found = finder(name, ignore_missing=True)
    if found is None:
        raise PermanentError(
            f"public OpenStack has no {kind} {name!r}: check the azfed mapping for it",
            provider="openstack",
            code=f"{kind}-not-found",
        )
    return found


class OpenStackBackend:
    """CloudBackend for a public OpenStack cloud (openstacksdk, off the event loop)."""

    provider = "openstack"

    def __init__(self, settings: OpenStackSettings) -> None:
        self.settings = settings
        connect = connector(settings.cloud, timeout_s=settings.timeout_s, auth=dict(settings.auth))
        self._sdk = SdkConnection(connect, concurrency=settings.concurrency)

    # --- plumbing ------------------------------------------------------------------------------

    async def _call(self, action: str, subject: str, fn: Callable[[Any], T]) -> T:
        """Run `fn(connection)` in a thread, bounded, errors mapped, throttling retried."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((ThrottledError, CloudUnavailableError)),
            stop=stop_after_attempt(self.settings.retries + 1),
            wait=wait_random_exponential(multiplier=self.settings.backoff_s, max=30),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._call_once(action, subject, fn)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _call_once(self, action: str, subject: str, fn: Callable[[Any], T]) -> T:
        try:
            return await self._sdk.run(fn)
        except (os_exc.SDKException, ks_exc.ClientException) as err:
            if isinstance(err, os_exc.ResourceFailure | os_exc.ResourceTimeout):
                raise
            raise map_error(err, action, subject) from err

    async def close(self) -> None:
        await self._sdk.close()

    async def _wait(self, remote_id: str, status: str, subject: str) -> Any:
        def wait(conn: Any) -> Any:
            server = conn.compute.get_server(remote_id)
            return conn.compute.wait_for_server(
                server, status=status, failures=["ERROR"], interval=1, wait=self.settings.wait_s
            )

        try:
            return await self._call("wait", subject, wait)
        except os_exc.ResourceFailure as err:
            server = await self._call(
                "get_server", subject, lambda c: c.compute.get_server(remote_id)
            )
            raise fault_error(server, subject) from err
        except os_exc.ResourceTimeout as err:
            raise PermanentError(
                f"public OpenStack server {remote_id} did not reach {status} "
                f"within {self.settings.wait_s:.0f}s",
                provider="openstack",
            ) from err

    # --- reads ---------------------------------------------------------------------------------

    async def describe(self, remote_id: str) -> RemoteInstance:
        server = await self._call(
            "get_server", remote_id, lambda c: c.compute.get_server(remote_id)
        )
        return to_remote(server)

    async def find(self, instance_uuid: str) -> RemoteInstance | None:
        name = remote_name(instance_uuid)

        def lookup(conn: Any) -> list[Any]:
            return list(conn.compute.servers(details=True, name=f"^{name}$"))

        for server in await self._call("list_servers", name, lookup):
            remote = to_remote(server)
            if remote.instance_uuid == instance_uuid and remote.state is not RemoteState.TERMINATED:
                return remote
        return None

    async def find_gone(self, instance_uuid: str) -> RemoteInstance | None:
        """Nova's API lists no deleted server to a project: a deleted one is not found."""
        return None

    async def list_all(self) -> list[RemoteInstance]:
        servers = await self._call(
            "list_servers", "azfed servers", lambda c: list(c.compute.servers(name="^azfed-"))
        )
        found = [to_remote(s) for s in servers]
        return [r for r in found if r.instance_uuid is not None]

    async def console_output(self, remote_id: str) -> str:
        out = await self._call(
            "get_console_output",
            remote_id,
            lambda c: c.compute.get_server_console_output(remote_id),
        )
        return str(out.get("output") or "")

    # --- spawn ---------------------------------------------------------------------------------

    def _create(self, req: SpawnRequest, conn: Any) -> Any:
        """The server (and, for a Neutron port, its public port first); a server the public
        cloud refuses takes the port made for it along."""
        flavor = _lookup("flavor", req.instance_type, conn.compute.find_flavor)
        image = _lookup("image", req.image, conn.image.find_image)
        port = self._port(req, conn) if req.network is not None else None
        try:
            return conn.compute.create_server(**self._server_attrs(req, flavor, image, port, conn))
        except BaseException:
            if port is not None:
                conn.network.delete_port(port.id, ignore_missing=True)
            raise

    def _server_attrs(
        self, req: SpawnRequest, flavor: Any, image: Any, port: Any, conn: Any
    ) -> Any:
        s = self.settings
        networks: Any = "none"
        if port is not None:
            networks = [{"port": port.id}]
        elif s.network:
            networks = [{"uuid": _lookup("network", s.network, conn.network.find_network).id}]
        attrs: dict[str, Any] = {
            "name": remote_name(req.instance_uuid),
            "flavor_id": flavor.id,
            "image_id": image.id,
            "networks": networks,
            "metadata": {**req.labels(), "azfed:name": req.name[:255]},
        }
        if s.key_name:
            attrs["key_name"] = s.key_name
        if s.security_groups and port is None:  # a port carries its own groups
            attrs["security_groups"] = [{"name": g} for g in s.security_groups]
        if s.availability_zone:
            attrs["availability_zone"] = s.availability_zone
        if req.user_data:
            raw = req.user_data.encode() if isinstance(req.user_data, str) else req.user_data
            attrs["user_data"] = base64.b64encode(raw).decode()
        return attrs

    def _port(self, req: SpawnRequest, conn: Any) -> Any:
        """The public port of a server booted on a mirrored network: in the public subnet the
        local one mirrors, with the local port's address and the mirrored groups. Made once
        per Nova UUID (named like the server), so a retried spawn adopts it.

        The address is kept where the public cloud allows it. Where it does not (its policy
        lets only the network's owner choose an address, Neutron's
        `create_port:fixed_ips:ip_address`; or another of its ports has the address), the
        port takes an address the public cloud gives: it is reported back
        (`RemoteInstance.private_ip`) and the proxy host moves the local port to it.
        """
        net = req.network
        assert net is not None
        name = remote_name(req.instance_uuid)
        for existing in conn.network.ports(name=name):
            return existing
        subnet = _lookup("subnet", net.subnet_id, conn.network.find_subnet)
        attrs = {
            "name": name,
            "network_id": subnet.network_id,
            "security_groups": list(net.security_group_ids),
            "description": f"azfed: Neutron port {net.port_id} of Nova server {req.instance_uuid}",
        }
        try:
            return conn.network.create_port(
                fixed_ips=[{"subnet_id": subnet.id, "ip_address": net.private_ip}], **attrs
            )
        except (os_exc.ForbiddenException, os_exc.ConflictException) as err:
            if isinstance(err, os_exc.ConflictException) and "already allocated" not in str(err):
                raise
            log.warning(
                "openstack.fixed_ip_refused",
                instance_uuid=req.instance_uuid,
                address=net.private_ip,
                error=str(err),
            )
        return conn.network.create_port(fixed_ips=[{"subnet_id": subnet.id}], **attrs)

    async def spawn(self, request: SpawnRequest) -> RemoteInstance:
        """Create (or adopt) the server for this Nova UUID and wait for ACTIVE.

        A server created here that does not become ACTIVE is deleted before the error
        propagates: nothing is left behind in the public cloud.
        """
        existing = await self.find(request.instance_uuid)
        if existing is not None and existing.state is not RemoteState.ERROR:
            return to_remote(await self._wait(existing.remote_id, "ACTIVE", request.instance_type))
        if existing is not None:  # a failed earlier attempt: clear it, then build again
            await self.terminate(existing.remote_id)
        subject = f"{request.instance_type}"
        if self.settings.availability_zone:
            subject += f" in {self.settings.availability_zone}"
        server = await self._call(
            "create_server", subject, functools.partial(self._create, request)
        )
        try:
            return to_remote(await self._wait(server.id, "ACTIVE", subject))
        except BaseException:
            await asyncio.shield(self.terminate_quietly(server.id))
            raise

    # --- lifecycle -----------------------------------------------------------------------------

    async def stop(self, remote_id: str) -> None:
        current = await self.describe(remote_id)
        if current.state is not RemoteState.STOPPED:
            await self._call("stop_server", remote_id, lambda c: c.compute.stop_server(remote_id))
        await self._wait(remote_id, "SHUTOFF", remote_id)

    async def start(self, remote_id: str) -> None:
        current = await self.describe(remote_id)
        if current.state is not RemoteState.RUNNING:
            await self._call("start_server", remote_id, lambda c: c.compute.start_server(remote_id))
        await self._wait(remote_id, "ACTIVE", remote_id)

    async def reboot(self, remote_id: str) -> None:
        await self._call(
            "reboot_server", remote_id, lambda c: c.compute.reboot_server(remote_id, "SOFT")
        )
        await self._wait(remote_id, "ACTIVE", remote_id)

    async def terminate(self, remote_id: str) -> None:
        """Delete and wait until it is gone, then the public port made for it (a port made
        before the server outlives it); a server already gone is fine."""

        def delete(conn: Any) -> None:
            server = conn.compute.find_server(remote_id, ignore_missing=True)
            ports = _own_ports(conn, remote_id, server.name if server is not None else None)
            conn.compute.delete_server(remote_id, ignore_missing=True)
            if server is not None:
                conn.compute.wait_for_delete(server, interval=1, wait=self.settings.wait_s)
            for port in ports:
                conn.network.delete_port(port, ignore_missing=True)

        await self._call("delete_server", remote_id, delete)

    async def terminate_quietly(self, remote_id: str) -> None:
        try:
            await self.terminate(remote_id)
        except (CloudError, os_exc.SDKException):
            log.exception("openstack.cleanup_failed", id=remote_id)

    async def resize(self, remote_id: str, instance_type: str) -> None:
        """Resize to another flavor and confirm it; the power state is kept by Nova."""
        current = await self.describe(remote_id)
        if current.instance_type == instance_type:
            return
        was_stopped = current.state is RemoteState.STOPPED

        def resize(conn: Any) -> None:
            flavor = _lookup("flavor", instance_type, conn.compute.find_flavor)
            conn.compute.resize_server(remote_id, flavor.id)

        await self._call("resize_server", f"{instance_type} for {remote_id}", resize)
        await self._wait(remote_id, "VERIFY_RESIZE", instance_type)
        await self._call(
            "confirm_resize", remote_id, lambda c: c.compute.confirm_server_resize(remote_id)
        )
        await self._wait(remote_id, "SHUTOFF" if was_stopped else "ACTIVE", instance_type)

    # --- not offered on a public OpenStack (yet) ------------------------------------------------
    # The public cloud's own server image create and suspend would map well, but nothing here
    # can run them against a real public cloud's Glance and hypervisor in tests: refused with
    # the reason rather than shipped untested.

    async def create_image(
        self, remote_id: str, name: str, description: str, labels: Mapping[str, str]
    ) -> str:
        raise PermanentError(
            f"snapshots of burst servers on a public OpenStack are not supported ({remote_id}): "
            "snapshot inside the guest, or burst to EC2",
            provider="openstack",
            code="SnapshotUnsupported",
        )

    async def delete_image(self, image_id: str) -> None:
        """create_image never makes one, so there is never one to delete."""

    async def hibernate(self, remote_id: str) -> None:
        raise HibernationUnsupported(
            f"burst servers on a public OpenStack cannot be suspended ({remote_id}): "
            "stop the server instead",
            provider="openstack",
            code="SuspendUnsupported",
        )

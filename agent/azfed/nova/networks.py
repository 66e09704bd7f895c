"""Which public AZ a boot's networks pin it to.

A network that mirrors a VPC subnet (`azfed network mirror --availability-zone aws-az`) only
exists in that public AZ: its ports are bound on the AZ's proxy host, and a local host could not
bind them. So a boot that asks for such a network (or for a port on one) is treated by the
filter as if it had asked for that AZ: the policy honours it, or refuses it with its rule
(never places it locally, where the build would fail on the port binding).

Neutron is asked with Nova's own client and service credentials; answers are kept for
`ttl_s` (networks are rarely retagged). When Neutron does not answer, the boot is placed as if
it named no network, and the failure is logged (`networks.unreadable`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from azfed.neutron.subnets import az_of

log = structlog.get_logger(__name__)
# what Nova puts where a network id goes for `networks=none` and `networks=auto`
# (nova.objects.network_request.NETWORK_ID_NONE / NETWORK_ID_AUTO): no network to look up
NOT_NETWORKS = frozenset({"none", "auto"})


def requested_networks(spec: Any) -> tuple[list[str], list[str]]:
    """(network ids, port ids) a RequestSpec asks for; empty for `networks=none`/`auto`."""
    try:
        requested = list(spec.requested_networks or [])
    except (AttributeError, NotImplementedError):  # an older spec without the field
        return [], []
    networks = [
        str(r.network_id)
        for r in requested
        if getattr(r, "network_id", None) and str(r.network_id) not in NOT_NETWORKS
    ]
    ports = [str(r.port_id) for r in requested if getattr(r, "port_id", None)]
    return networks, ports


class NetworkPins:
    """The public AZ a boot's networks require, read from Neutron (`client()` gives a
    neutronclient Client, as nova.network.neutron.get_client does)."""

    def __init__(
        self,
        client: Callable[[], Any],
        ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client, self._ttl_s, self._clock = client, ttl_s, clock
        self._known: dict[str, tuple[float, str | None]] = {}  # network id -> (read at, AZ)

    def az_for(self, spec: Any) -> str | None:
        networks, ports = requested_networks(spec)
        if not networks and not ports:
            return None
        try:
            found = [self._az(n) for n in [*networks, *self._networks_of(ports)]]
        except Exception:  # a plugin boundary: Neutron's client raises its own and requests'
            log.warning("networks.unreadable", networks=networks, ports=ports, exc_info=True)
            return None
        pinned = sorted({az for az in found if az})
        if len(pinned) > 1:
            log.warning("networks.conflicting_azs", networks=networks, azs=pinned)
        return pinned[0] if pinned else None

    def _az(self, network_id: str) -> str | None:
        now = self._clock()
        cached = self._known.get(network_id)
        if cached is not None and now - cached[0] < self._ttl_s:
            return cached[1]
        network = self._client().show_network(network_id, fields=["id", "tags"])["network"]
        az = az_of(network)
        self._known[network_id] = (now, az)
        return az

    def _networks_of(self, ports: Iterable[str]) -> list[str]:
        client = self._client() if ports else None
        return [str(client.show_port(p)["port"]["network_id"]) for p in ports] if client else []


def nova_neutron_client() -> Any:
    """Nova's Neutron client with the scheduler's [neutron] service credentials."""
    from nova import context as nova_context
    from nova.network import neutron

    return neutron.get_client(nova_context.get_admin_context(), admin=True)

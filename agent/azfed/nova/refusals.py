"""What FederationDriver refuses, and why: one table, the faults Nova records, docs/driver.md.

A burst instance lives in the public cloud, so some of Nova's operations have nothing to act
on there. Each is refused with a Nova exception whose message says why and what to do
instead; Nova records it as the instance's fault (or returns it from its API), never a
NotImplementedError, which Nova's API turns into a bare "not implemented", and never a
silent success. Where Nova has its own exception for the case (a console type, rescue,
a guest password) the driver raises that one, with the reason below as its message.
"""

from __future__ import annotations

from typing import Final

from azfed.errors import AzfedError
from nova import exception

# operation (the driver method, or a group of them) -> why the public AZ cannot do it
REASONS: Final = {
    "pause": "EC2 has no pause (an instance runs or is stopped): stop the server instead",
    "suspend": (
        "burst instances are launched without EC2 hibernation, so they cannot be suspended: "
        "stop the server instead"
    ),
    "rescue": (
        "the public cloud cannot boot an instance from a rescue image beside its own root "
        "disk: rebuild the server or reach it through its console log"
    ),
    "set_admin_password": (
        "no guest agent runs in burst instances: give the password or an SSH key in the "
        "server's user data or key pair"
    ),
    "volume": "Cinder volumes cannot be attached to an instance in the public cloud",
    "console": (
        "the public cloud's consoles are not reachable through Nova's console proxies: "
        "`openstack console log show` shows the instance's console output"
    ),
    "trigger_crash_dump": "azfed does not send diagnostic interrupts to burst instances",
    "live_migration": ("the public AZ has one host: a burst instance has no other host to move to"),
    "host_power_action": (
        "the proxy host's power is its operator's to manage, not Nova's; its instances run "
        "in the public cloud and do not follow it"
    ),
    "set_host_enabled": (
        "enable or disable the proxy host's nova-compute service instead "
        "(`openstack compute service set --disable`)"
    ),
    "host_cpu_stats": "the public AZ's CPUs are the public cloud's, not the proxy host's",
}


class BurstOperationNotSupported(exception.NotSupported, AzfedError):  # type: ignore[misc]
    """An operation the public AZ refuses; `reason` comes from REASONS."""

    msg_fmt = "%(operation)s is not available for burst instances: %(reason)s"

    def __init__(self, operation: str, reason: str) -> None:
        # Nova's __init__ formats msg_fmt from these; AzfedError adds no state of its own
        exception.NotSupported.__init__(self, operation=operation, reason=reason)


def refuse(operation: str, group: str | None = None) -> BurstOperationNotSupported:
    """The refusal of `operation`, for the reason recorded under `group` (or its own name)."""
    return BurstOperationNotSupported(operation=operation, reason=REASONS[group or operation])

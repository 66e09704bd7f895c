# Nova calls the refused methods positionally with its own signatures: PLR0917 cannot apply.
# ruff: noqa: PLR0917
"""What FederationDriver refuses, and why: one table, the faults Nova records, docs/driver.md.

A burst instance lives in the public cloud, so some of Nova's operations have nothing to act
on there. Each is refused with a Nova exception whose message says why and what to do
instead; Nova records it as the instance's fault (or returns it from its API), never a
NotImplementedError, which Nova's API turns into a bare "not implemented", and never a
silent success. Where Nova has its own exception for the case (a console type, rescue,
a guest password) the driver raises that one, with the reason below as its message.
"""

from __future__ import annotations

from typing import Any, Final

from azfed.errors import AzfedError
from nova import exception

# operation (the driver method, or a group of them) -> why the public AZ cannot do it
REASONS: Final = {
    "pause": "EC2 has no pause (an instance runs or is stopped): stop the server instead",
    "suspend": (
        "the instance was launched without EC2 hibernation, so it cannot be suspended: "
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


def _no_console(name: str) -> Any:
    """Nova's answer for a console type a driver does not offer, with the public AZ's reason."""
    return exception.ConsoleTypeUnavailable(
        message=f"Unavailable console type {name}: {REASONS['console']}"
    )


class RefusedOperations:
    """The virt-driver methods FederationDriver refuses, each with its Nova exception.

    A mixin placed before nova.virt.driver.ComputeDriver, whose versions raise
    NotImplementedError. Nova calls these with its own signatures, positionally.
    """

    def pause(self, instance: Any) -> None:
        raise refuse("pause")

    def unpause(self, instance: Any) -> None:
        raise refuse("unpause", "pause")

    # suspend and resume: FederationDriver hibernates where EC2 can, else refuses ("suspend")

    def rescue(
        self,
        context: Any,
        instance: Any,
        network_info: Any,
        image_meta: Any,
        rescue_password: Any,
        block_device_info: Any,
        share_info: Any,
    ) -> None:
        raise exception.InstanceNotRescuable(instance_id=instance.uuid, reason=REASONS["rescue"])

    def unrescue(self, context: Any, instance: Any) -> None:
        # rescue is refused, so no burst instance is ever in rescue mode
        raise exception.InstanceNotInRescueMode(instance_id=instance.uuid)

    def set_admin_password(self, instance: Any, new_pass: str) -> None:
        # Nova's own exception: its compute manager and API answer it as "not supported"
        raise exception.SetAdminPasswdNotSupported(
            message=f"Set admin password is not supported: {REASONS['set_admin_password']}"
        )

    def trigger_crash_dump(self, instance: Any) -> None:
        raise exception.TriggerCrashDumpNotSupported(
            message=f"Triggering crash dump is not supported: {REASONS['trigger_crash_dump']}"
        )

    def get_vnc_console(self, context: Any, instance: Any) -> Any:
        raise _no_console("vnc")

    def get_spice_console(self, context: Any, instance: Any) -> Any:
        raise _no_console("spice-html5")

    def get_serial_console(self, context: Any, instance: Any) -> Any:
        raise _no_console("serial")

    def get_mks_console(self, context: Any, instance: Any) -> Any:
        raise _no_console("webmks")

    def get_volume_connector(self, instance: Any) -> Any:
        raise refuse("attaching a volume", "volume")

    def get_device_name_for_instance(self, instance: Any, bdms: Any, block_device_obj: Any) -> Any:
        raise refuse("attaching a volume", "volume")

    def attach_volume(
        self,
        context: Any,
        connection_info: Any,
        instance: Any,
        mountpoint: Any,
        disk_bus: Any = None,
        device_type: Any = None,
        encryption: Any = None,
    ) -> None:
        raise refuse("attaching a volume", "volume")

    def detach_volume(
        self,
        context: Any,
        connection_info: Any,
        instance: Any,
        mountpoint: Any,
        encryption: Any = None,
    ) -> None:
        raise refuse("detaching a volume", "volume")

    def swap_volume(
        self,
        context: Any,
        old_connection_info: Any,
        new_connection_info: Any,
        instance: Any,
        mountpoint: Any,
        resize_to: Any,
    ) -> None:
        raise refuse("swapping a volume", "volume")

    def block_stats(self, instance: Any, disk_id: Any) -> Any:
        raise refuse("volume statistics", "volume")

    def check_can_live_migrate_destination(
        self,
        context: Any,
        instance: Any,
        src_compute_info: Any,
        dst_compute_info: Any,
        block_migration: bool = False,
        disk_over_commit: bool = False,
    ) -> Any:
        raise exception.MigrationPreCheckError(reason=REASONS["live_migration"])

    def check_can_live_migrate_source(
        self, context: Any, instance: Any, dest_check_data: Any, block_device_info: Any = None
    ) -> Any:
        raise exception.MigrationPreCheckError(reason=REASONS["live_migration"])

    def live_migration(
        self,
        context: Any,
        instance: Any,
        dest: str,
        post_method: Any,
        recover_method: Any,
        block_migration: bool = False,
        migrate_data: Any = None,
    ) -> None:
        # Nova's pre-checks above refuse first; this is for a caller that skipped them
        raise exception.MigrationError(reason=REASONS["live_migration"])

    def live_migration_force_complete(self, instance: Any) -> None:
        # live migration is refused, so there is never one to complete or abort
        raise exception.NoActiveMigrationForInstance(instance_id=instance.uuid)

    def live_migration_abort(self, instance: Any) -> None:
        raise exception.NoActiveMigrationForInstance(instance_id=instance.uuid)

    def host_power_action(self, action: str) -> None:
        raise refuse(f"host power action {action!r}", "host_power_action")

    def set_host_enabled(self, enabled: bool) -> None:
        raise refuse("enabling or disabling the host", "set_host_enabled")

    def get_host_cpu_stats(self) -> Any:
        raise refuse("host CPU statistics", "host_cpu_stats")

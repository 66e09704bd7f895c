"""What Nova's virt-driver conformance suite should find for FederationDriver, test by test.

Nova's `_VirtDriverTestCase` (nova/tests/unit/virt/test_virt_drivers.py, in the nova wheel)
has 64 tests. Each one either passes as Nova wrote it, or is listed here:

- REFUSED: the operation is refused on purpose (the driver raises a Nova exception that says
  why: azfed/nova/refusals.py); our subclass replaces Nova's test with one that asserts the
  refusal and its reason. docs/driver.md lists every one (tests/nova/test_virt_driver_conformance
  holds the two to each other).
- PENDING: not done yet; skipped with the reason, and listed in docs/driver.md too.
- WITH_REPORT: Nova's test as written, once the receiver holds the agent's report.

Plain Python: the project's tests import it without Nova, the suite inside Nova's venv.
"""

from __future__ import annotations

from typing import Final

SUITE_SIZE: Final = 64

# Nova's test -> the refusal it meets (the key of azfed.nova.refusals.REASONS, or the
# Nova exception's own case)
REFUSED: Final = {
    "test_pause": "pause",
    "test_unpause_unpaused_instance": "pause",
    "test_unpause_paused_instance": "pause",
    "test_suspend": "suspend",
    "test_resume_unsuspended_instance": "suspend",
    "test_resume_suspended_instance": "suspend",
    "test_rescue": "rescue",
    "test_unrescue_rescued_instance": "rescue",
    "test_unrescue_unrescued_instance": "rescue",
    "test_set_admin_password": "set_admin_password",
    "test_trigger_crash_dump": "trigger_crash_dump",
    "test_get_vnc_console": "console",
    "test_get_spice_console": "console",
    "test_get_serial_console": "console",
    "test_get_mks_console": "console",
    "test_get_volume_connector": "volume",
    "test_get_volume_connector_storage_ip": "volume",
    "test_attach_detach_volume": "volume",
    "test_attach_detach_different_power_states": "volume",
    "test_swap_volume": "volume",
    "test_block_stats": "volume",
    "test_get_device_name_for_instance": "volume",
    "test_live_migration": "live_migration",
    "test_live_migration_force_complete": "live_migration",
    "test_live_migration_abort": "live_migration",
    "test_migrate_disk_and_power_off": "resize_to_another_host",
    "test_host_power_action_reboot": "host_power_action",
    "test_host_power_action_shutdown": "host_power_action",
    "test_host_power_action_startup": "host_power_action",
    "test_set_host_enabled": "set_host_enabled",
    "test_get_host_cpu_stats": "host_cpu_stats",
}

# Nova's test -> why it is skipped for now
PENDING: Final[dict[str, str]] = {}

# Nova's test -> what it needs besides the driver: the agent's report of the instance in the
# receiver (diagnostics come from it). Our subclass posts one to a real receiver, then runs
# Nova's test as Nova wrote it.
WITH_REPORT: Final = ("test_get_diagnostics", "test_get_instance_diagnostics")

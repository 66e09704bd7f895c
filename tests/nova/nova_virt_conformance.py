# A Nova (testtools) TestCase, run by unittest in Nova's venv where pytest is not installed:
# its own assert methods, not pytest's.
# ruff: noqa: PT009, PT027
"""Nova's virt-driver conformance suite against FederationDriver, with moto's EC2 behind it.

Runs inside the test bed's OpenStack venv (Nova and its test fixtures are there, not in the
project's venv): `python -m tests.nova.nova_virt_conformance` from the checkout, with
`AWS_ENDPOINT_URL` naming moto's server and `OS_NOVA_DISABLE_EVENTLET_PATCHING=1` (native
threads, as nova-compute runs the driver). tests/nova/test_virt_driver_conformance.py runs it
so from the project's pytest session, in shards side by side (`AZFED_CONFORMANCE_SHARD=i/n`),
and judges the JSON report each prints last.

Every one of Nova's `_VirtDriverTestCase` tests runs: as Nova wrote it, or, for an operation
the public AZ refuses (conformance_verdicts.REFUSED), replaced by a test asserting the
refusal and its reason; the not-yet-done ones (PENDING) are skipped with their reason. Nova's
tests pass when a driver raises NotImplementedError (they only log it): here that log fails
the test, so "not implemented" can never hide as a pass.

Each shard has a moto region of its own, emptied of instances before and after each test: it
neither sees nor touches the other shards' or the other tests' instances in the session's
moto.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import unittest
from typing import Any

import aioboto3
import boto3
import fixtures

# first of Nova: its test package picks eventlet or native threads at its import; the driver
# runs as nova-compute runs it, on native threads (OS_NOVA_DISABLE_EVENTLET_PATCHING=1)
import nova.tests.unit  # noqa: F401
from azfed.clouds import NAME_TAG, UUID_TAG
from azfed.nova import driver, refusals
from nova import exception, test
from nova.compute import power_state
from nova.network import model as network_model
from nova.tests.unit import utils as test_utils
from nova.tests.unit.virt import test_virt_drivers
from nova.virt import fake

from tests.nova.reported import ReceiverProcess

# the suite's own moto regions, one per shard
REGIONS = ("eu-west-1", "eu-west-2", "eu-west-3", "eu-north-1")


def _shard() -> tuple[int, int]:
    """`AZFED_CONFORMANCE_SHARD=i/n`: this process runs every n-th test from the i-th."""
    i, _, n = os.environ.get("AZFED_CONFORMANCE_SHARD", "0/1").partition("/")
    return int(i), int(n)


REGION = REGIONS[_shard()[0]]
FLAVOR_MAP = {"kinda.big": "t3.micro"}  # the flavor of Nova's test instances
LIVE = ["pending", "running", "stopping", "stopped"]


@functools.cache
def _ec2() -> Any:
    """A plain boto3 client to look at moto as an operator would (one: clients are slow to make)."""
    return boto3.client(
        "ec2",
        region_name=REGION,
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@functools.cache
def _ami() -> str:
    """An AMI of moto's: asked once, since moto takes a second to list them all."""
    images = _ec2().describe_images(Owners=["amazon"])["Images"]
    return str(sorted(i["ImageId"] for i in images)[0])


@functools.cache
def _session() -> aioboto3.Session:
    return aioboto3.Session()


def _terminate_all(ec2: Any) -> None:
    """Terminate every live instance of the suite's region (moto terminates at once)."""
    out = ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": LIVE}])
    ids = [i["InstanceId"] for r in out["Reservations"] for i in r["Instances"]]
    if ids:
        ec2.terminate_instances(InstanceIds=ids)


class NotImplementedLogged(fixtures.Fixture):
    """Fails the test if Nova's catch_notimplementederror logged a NotImplementedError."""

    class _Handler(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.ERROR)
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            if "does not implement" in record.getMessage():
                self.messages.append(record.getMessage())

    def __init__(self, case: unittest.TestCase) -> None:
        super().__init__()
        self.case = case

    def _setUp(self) -> None:
        handler = self._Handler()
        logger = logging.getLogger(test_virt_drivers.__name__)
        logger.addHandler(handler)
        self.addCleanup(logger.removeHandler, handler)
        self.addCleanup(lambda: self.case.assertEqual([], handler.messages))


class FederationDriverConformance(test_virt_drivers._VirtDriverTestCase, test.TestCase):  # type: ignore[misc]
    """Nova's driver contract, held against FederationDriver bursting to moto's EC2."""

    def setUp(self) -> None:
        self.driver_module = "azfed.nova.driver.FederationDriver"
        super().setUp()
        ec2 = _ec2()
        # init_host keeps the node's UUID in state_path, as Nova does
        self.flags(state_path=self.useFixture(fixtures.TempDir()).path)
        settings = {
            "provider": "ec2",
            "region": REGION,
            "endpoint_url": os.environ["AWS_ENDPOINT_URL"],
            "flavor_map": FLAVOR_MAP,
            "default_image": _ami(),
            "max_attempts": 2,
            "throttle_retries": 0,
            "wait_delay_s": 0.05,
            "wait_attempts": 100,
        }
        self.flags(group="azfed", **settings)
        _terminate_all(ec2)
        self.addCleanup(_terminate_all, ec2)
        self.addCleanup(self.connection.cleanup_host, "myhostname")
        # one aioboto3 session for every test's driver: a new one parses botocore's EC2 model
        # again (0.2 s of CPU), which nova-compute does once in its life
        shared = _session()
        self.useFixture(
            fixtures.MockPatch("azfed.clouds.ec2.aioboto3.Session", return_value=shared)
        )
        self.useFixture(NotImplementedLogged(self))
        self.ec2 = ec2

    def _get_running_instance(self, obj: bool = True) -> tuple[Any, Any]:
        """Nova's running instance, booted without a port (`networks=none`): the port Nova's
        helper makes up exists in no Neutron, and the driver reads a burst VM's port from
        Neutron (tests/e2e/test_ports.py boots one on a real port, in the bed)."""
        instance_ref = test_utils.get_test_instance(obj=obj)
        network_info = network_model.NetworkInfo()
        image_meta = test_utils.get_test_image_object(None, instance_ref)
        self.connection.spawn(
            self.ctxt, instance_ref, image_meta, [], "herp", {}, network_info=network_info
        )
        return instance_ref, network_info

    def test_ours_a_port_neutron_cannot_show_aborts_the_build_saying_so(self) -> None:
        """Nova's made-up port (no Neutron to read it from) ends the build with a fault naming
        the port, not with Neutron's client error, and launches nothing."""
        instance = test_utils.get_test_instance(obj=True)
        made_up = test_utils.get_test_network_info()
        image_meta = test_utils.get_test_image_object(None, instance)
        err = self.assertRaises(
            exception.BuildAbortException,
            self.connection.spawn,
            self.ctxt, instance, image_meta, [], "herp", {}, network_info=made_up,
        )  # fmt: skip
        self.assertIn(made_up[0]["id"], str(err))
        self.assertEqual(self._live(instance.uuid), [])

    def _refused(self, exc: type[Exception], reason: str, call: Any, *args: Any) -> None:
        """`call(*args)` raises `exc`, whose message gives the public AZ's reason."""
        err = self.assertRaises(exc, call, *args)
        self.assertIn(reason, str(err))

    def _refused_for(self, group: str, call: Any, *args: Any) -> None:
        self._refused(refusals.BurstOperationNotSupported, refusals.REASONS[group], call, *args)

    # --- ours: what Nova's tests do not look at ----------------------------------------------

    def test_ours_spawn_labels_nova_name_and_leaves_out_a_missing_project(self) -> None:
        instance, _ = self._get_running_instance()
        self.assertIsNone(instance.project_id)  # Nova's tests boot in the admin context
        [raw] = self._live(instance.uuid)
        tags = {t["Key"]: t["Value"] for t in raw["Tags"]}
        self.assertEqual(instance.name, tags[NAME_TAG])
        self.assertNotIn("azfed:project-id", tags)

    def test_ours_an_instance_without_the_name_label_is_named_through_its_uuid(self) -> None:
        """One launched before azfed labelled names is still listed under Nova's name."""
        instance = test_utils.get_test_instance(obj=True)
        self.ec2.run_instances(
            ImageId=_ami(),
            InstanceType="t3.micro",
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": UUID_TAG, "Value": instance.uuid}]}
            ],
        )
        self.assertEqual([instance.name], self.connection.list_instances())
        self.assertEqual([instance.uuid], self.connection.list_instance_uuids())

    def test_ours_resume_on_host_boot_leaves_an_instance_alone_while_the_cloud_is_away(
        self,
    ) -> None:
        """Nova would put it in ERROR; the driver logs and leaves it to the power-state sync."""
        instance, network_info = self._get_running_instance()
        self.flags(group="azfed", endpoint_url="http://127.0.0.1:9", max_attempts=1)
        restarted = driver.FederationDriver(fake.FakeVirtAPI())
        self.addCleanup(restarted.cleanup_host, "myhostname")
        share_info = test_virt_drivers.objects.ShareMappingList()
        restarted.resume_state_on_host_boot(self.ctxt, instance, network_info, share_info)
        self.assertIn("instance.resume_deferred", self.stdlog.logger.output)
        self.assertEqual(["running"], [i["State"]["Name"] for i in self._live(instance.uuid)])

    def _live(self, instance_uuid: str) -> list[dict[str, Any]]:
        out = self.ec2.describe_instances(
            Filters=[
                {"Name": f"tag:{UUID_TAG}", "Values": [instance_uuid]},
                {"Name": "instance-state-name", "Values": LIVE},
            ]
        )
        return [i for r in out["Reservations"] for i in r["Instances"]]

    # --- with the agent's report in a real receiver: diagnostics -------------------------------

    def _with_report(self) -> ReceiverProcess:
        """A receiver for the driver, given the agent's report of each instance spawned (as
        the agent's next cycle would), before Nova's test reads it."""
        receiver = ReceiverProcess()
        self.addCleanup(receiver.stop)
        self.flags(group="azfed", receiver_url=receiver.url)
        spawn = self.connection.spawn

        def spawn_then_report(ctxt: Any, instance: Any, *args: Any, **kwargs: Any) -> None:
            spawn(ctxt, instance, *args, **kwargs)
            [raw] = self._live(instance.uuid)
            receiver.report(instance.uuid, raw["InstanceId"])

        self.connection.spawn = spawn_then_report
        return receiver

    def test_get_diagnostics(self) -> None:
        self._with_report()
        test_virt_drivers._VirtDriverTestCase.test_get_diagnostics(self)

    def test_get_instance_diagnostics(self) -> None:
        self._with_report()
        test_virt_drivers._VirtDriverTestCase.test_get_instance_diagnostics(self)

    def test_ours_diagnostics_carry_the_agents_figures(self) -> None:
        """Both forms give what the agent reported: CPU time, memory, the vNIC and the disk."""
        self._with_report()
        instance, _ = self._get_running_instance()
        diags = self.connection.get_instance_diagnostics(instance)
        self.assertEqual(("running", 90_000_000_000), (diags.state, diags.cpu_details[0].time))
        self.assertEqual((1024, 612), (diags.memory_details.maximum, diags.memory_details.used))
        nic, disk = diags.nic_details[0], diags.disk_details[0]
        self.assertEqual((1_048_576, 600), (nic.rx_octets, nic.tx_packets))
        self.assertEqual((4096, 7), (disk.read_bytes, disk.write_requests))
        legacy = self.connection.get_diagnostics(instance)
        self.assertEqual((90_000_000_000, 612), (legacy["cpu0_time"], legacy["memory_used_mib"]))
        self.assertEqual(524_288, legacy["eni-0a1b2c3d_tx"])
        self.assertEqual(8192, legacy["xvda_write"])

    def test_ours_diagnostics_without_a_report_say_why(self) -> None:
        """No report (or no receiver): Nova's InstanceNotReady (409), naming the cause."""
        instance, _ = self._get_running_instance()
        err = self.assertRaises(
            exception.InstanceNotReady, self.connection.get_instance_diagnostics, instance
        )
        self.assertIn("receiver_url is not set", str(err))
        receiver = ReceiverProcess()
        self.addCleanup(receiver.stop)
        self.flags(group="azfed", receiver_url=receiver.url)
        fresh = driver.FederationDriver(fake.FakeVirtAPI())
        self.addCleanup(fresh.cleanup_host, "myhostname")
        err = self.assertRaises(exception.InstanceNotReady, fresh.get_diagnostics, instance)
        self.assertIn("no agent has reported instance", str(err))

    # --- snapshot: an AMI behind the Glance image -------------------------------------------

    def test_ours_snapshot_registers_the_ami_as_the_glance_image(self) -> None:
        """The Glance image turns active, names the new AMI and requires the public AZ's
        trait; Nova's task states come in its order."""
        image = self.image_service.create(self.ctxt, {"name": "snap-ours"})
        instance, _ = self._get_running_instance()
        states: list[Any] = []
        self.connection.snapshot(
            self.ctxt, instance, image["id"], lambda **kw: states.append(kw["task_state"])
        )
        self.assertEqual(["image_pending_upload", "image_uploading"], states)
        got = self.image_service.show(self.ctxt, image["id"])
        props = got["properties"]
        self.assertEqual("active", got["status"])
        self.assertEqual("required", props["trait:CUSTOM_AZFED_BURST"])
        [ami] = self.ec2.describe_images(ImageIds=[props["azfed_ec2_ami"]])["Images"]
        self.assertEqual(("available", f"azfed-{image['id']}"), (ami["State"], ami["Name"]))

    def test_ours_a_failed_glance_update_leaves_no_ami(self) -> None:
        """The AMI exists only behind a usable Glance image: deregistered if Glance fails."""
        image = self.image_service.create(self.ctxt, {"name": "snap-fails"})
        instance, _ = self._get_running_instance()
        self.useFixture(
            fixtures.MockPatch(
                "nova.image.glance.API.update",
                side_effect=exception.ImageNotFound(image_id=image["id"]),
            )
        )
        before = {i["ImageId"] for i in self.ec2.describe_images(Owners=["self"])["Images"]}
        self.assertRaises(
            exception.ImageNotFound,
            self.connection.snapshot,
            self.ctxt,
            instance,
            image["id"],
            lambda **kw: None,
        )
        after = {i["ImageId"] for i in self.ec2.describe_images(Owners=["self"])["Images"]}
        self.assertEqual(before, after)

    # --- rebuild: Nova's own, power_off + destroy + spawn ------------------------------------

    def test_ours_nova_default_rebuild_gives_a_new_instance_under_the_same_uuid(self) -> None:
        """What Nova's compute manager does for a driver without `rebuild`: power off,
        destroy, spawn with the same instance and network_info."""
        instance, network_info = self._get_running_instance()
        [old] = self._live(instance.uuid)
        self.connection.power_off(instance)
        self.connection.destroy(self.ctxt, instance, network_info)
        image_meta = test_utils.get_test_image_object(None, instance)
        self.connection.spawn(self.ctxt, instance, image_meta, [], "", {}, network_info)
        [new] = self._live(instance.uuid)
        self.assertNotEqual(old["InstanceId"], new["InstanceId"])
        self.assertEqual("running", new["State"]["Name"])
        self.assertEqual([instance.name], self.connection.list_instances())

    # --- terminated behind Nova's back --------------------------------------------------------

    def test_ours_an_instance_terminated_outside_nova_reads_shut_down_and_stops_with_a_fault(
        self,
    ) -> None:
        """get_info says SHUTDOWN (Nova's power sync then stops the server); power_off of it
        succeeds and records a fault naming the public cloud."""
        instance, _ = self._get_running_instance()
        [raw] = self._live(instance.uuid)
        self.ec2.terminate_instances(InstanceIds=[raw["InstanceId"]])
        info = self.connection.get_info(instance)
        self.assertEqual(power_state.SHUTDOWN, info.state)
        faults: list[Any] = []
        self.useFixture(
            fixtures.MockPatch(
                "nova.compute.utils.add_instance_fault_from_exc",
                side_effect=lambda ctx, inst, exc: faults.append(str(exc)),
            )
        )
        self.connection.power_off(instance)
        [fault] = faults
        self.assertIn("terminated in the public cloud outside Nova", fault)

    # --- refused: pause, suspend, rescue, guest password, crash dump --------------------------

    def test_pause(self) -> None:
        instance, _ = self._get_running_instance()
        self._refused_for("pause", self.connection.pause, instance)

    def test_unpause_unpaused_instance(self) -> None:
        instance, _ = self._get_running_instance()
        self._refused_for("pause", self.connection.unpause, instance)

    def test_unpause_paused_instance(self) -> None:
        instance, _ = self._get_running_instance()
        self._refused_for("pause", self.connection.pause, instance)
        self._refused_for("pause", self.connection.unpause, instance)
        self.assertEqual(["running"], [i["State"]["Name"] for i in self._live(instance.uuid)])

    def test_suspend(self) -> None:
        instance, _ = self._get_running_instance()
        self._refused_for("suspend", self.connection.suspend, self.ctxt, instance)

    def test_resume_unsuspended_instance(self) -> None:
        instance, network_info = self._get_running_instance()
        resume = self.connection.resume
        self._refused_for("suspend", resume, self.ctxt, instance, network_info)

    def test_resume_suspended_instance(self) -> None:
        instance, network_info = self._get_running_instance()
        self._refused_for("suspend", self.connection.suspend, self.ctxt, instance)
        resume = self.connection.resume
        self._refused_for("suspend", resume, self.ctxt, instance, network_info)

    def _rescue(self) -> Any:
        instance, network_info = self._get_running_instance()
        image_meta = test_virt_drivers.objects.ImageMeta.from_dict({})
        share_info = test_virt_drivers.objects.ShareMappingList()
        args = (self.ctxt, instance, network_info, image_meta, "", None, share_info)
        reason = refusals.REASONS["rescue"]
        self._refused(exception.InstanceNotRescuable, reason, self.connection.rescue, *args)
        return instance

    def test_rescue(self) -> None:
        self._rescue()

    def test_unrescue_rescued_instance(self) -> None:
        instance = self._rescue()
        unrescue = self.connection.unrescue
        self.assertRaises(exception.InstanceNotInRescueMode, unrescue, self.ctxt, instance)

    def test_unrescue_unrescued_instance(self) -> None:
        instance, _ = self._get_running_instance()
        unrescue = self.connection.unrescue
        self.assertRaises(exception.InstanceNotInRescueMode, unrescue, self.ctxt, instance)

    def test_set_admin_password(self) -> None:
        instance, _ = self._get_running_instance()
        reason = refusals.REASONS["set_admin_password"]
        call = self.connection.set_admin_password
        self._refused(exception.SetAdminPasswdNotSupported, reason, call, instance, "p4ssw0rd")

    def test_trigger_crash_dump(self) -> None:
        instance, _ = self._get_running_instance()
        reason = refusals.REASONS["trigger_crash_dump"]
        call = self.connection.trigger_crash_dump
        self._refused(exception.TriggerCrashDumpNotSupported, reason, call, instance)

    # --- refused: consoles (the console log works: test_get_console_output) -------------------

    def _no_console(self, call: Any) -> None:
        instance, _ = self._get_running_instance()
        reason = refusals.REASONS["console"]
        self._refused(exception.ConsoleTypeUnavailable, reason, call, self.ctxt, instance)

    def test_get_vnc_console(self) -> None:
        self._no_console(self.connection.get_vnc_console)

    def test_get_spice_console(self) -> None:
        self._no_console(self.connection.get_spice_console)

    def test_get_serial_console(self) -> None:
        self.flags(enabled=True, group="serial_console")
        self._no_console(self.connection.get_serial_console)

    def test_get_mks_console(self) -> None:
        self._no_console(self.connection.get_mks_console)

    # --- refused: volumes --------------------------------------------------------------------

    def test_get_volume_connector(self) -> None:
        self._refused_for("volume", self.connection.get_volume_connector, {"id": "fake"})

    def test_get_volume_connector_storage_ip(self) -> None:
        self.flags(my_block_storage_ip="storage_ip", my_ip="my_ip")
        self._refused_for("volume", self.connection.get_volume_connector, {"id": "fake"})

    def test_attach_detach_volume(self) -> None:
        instance, _ = self._get_running_instance()
        info = {"driver_volume_type": "fake", "serial": "fake_serial", "data": {}}
        conn = self.connection
        self._refused_for("volume", conn.attach_volume, None, info, instance, "/dev/sda")
        self._refused_for("volume", conn.detach_volume, None, info, instance, "/dev/sda")

    def test_attach_detach_different_power_states(self) -> None:
        instance, _ = self._get_running_instance()
        self.connection.power_off(instance)
        info = {"driver_volume_type": "fake", "serial": "fake_serial", "data": {}}
        self._refused_for("volume", self.connection.attach_volume, None, info, instance, "/dev/sda")

    def test_swap_volume(self) -> None:
        instance, _ = self._get_running_instance()
        info = {"driver_volume_type": "fake", "data": {}}
        args = (None, info, info, instance, "/dev/sda", 2)
        self._refused_for("volume", self.connection.swap_volume, *args)

    def test_block_stats(self) -> None:
        instance, _ = self._get_running_instance()
        self._refused_for("volume", self.connection.block_stats, instance, "someid")

    def test_get_device_name_for_instance(self) -> None:
        instance, _ = self._get_running_instance()
        bdm = test_virt_drivers.mock.Mock(spec=test_virt_drivers.objects.BlockDeviceMapping)
        call = self.connection.get_device_name_for_instance
        self._refused_for("volume", call, instance, [], bdm)

    # --- refused: moving to another host -----------------------------------------------------

    def test_live_migration(self) -> None:
        instance, _ = self._get_running_instance()
        reason = refusals.REASONS["live_migration"]
        noop = lambda *a, **k: None  # noqa: E731
        conn = self.connection
        dest = (self.ctxt, instance, {}, {})
        self._refused(
            exception.MigrationPreCheckError, reason, conn.check_can_live_migrate_destination, *dest
        )
        source = (self.ctxt, instance, None)
        self._refused(
            exception.MigrationPreCheckError, reason, conn.check_can_live_migrate_source, *source
        )
        args = (self.ctxt, instance, "otherhost", noop, noop)
        self._refused(exception.MigrationError, reason, conn.live_migration, *args)

    def test_live_migration_force_complete(self) -> None:
        instance, _ = self._get_running_instance()
        call = self.connection.live_migration_force_complete
        self.assertRaises(exception.NoActiveMigrationForInstance, call, instance)

    def test_live_migration_abort(self) -> None:
        instance, _ = self._get_running_instance()
        call = self.connection.live_migration_abort
        self.assertRaises(exception.NoActiveMigrationForInstance, call, instance)

    def test_migrate_disk_and_power_off(self) -> None:
        """To another host: refused; to the proxy host itself (a resize): the instance stops."""
        instance, network_info = self._get_running_instance()
        flavor = test_utils.get_test_flavor()
        call = self.connection.migrate_disk_and_power_off
        args = (self.ctxt, instance, "dest_host", flavor, network_info)
        self._refused(exception.MigrationPreCheckError, "resized in place", call, *args)
        call(self.ctxt, instance, self.connection.get_host_ip_addr(), flavor, network_info)
        self.assertEqual(["stopped"], [i["State"]["Name"] for i in self._live(instance.uuid)])

    # --- refused: the proxy host's own power and CPUs ----------------------------------------

    def test_host_power_action_reboot(self) -> None:
        self._refused_for("host_power_action", self.connection.host_power_action, "reboot")

    def test_host_power_action_shutdown(self) -> None:
        self._refused_for("host_power_action", self.connection.host_power_action, "shutdown")

    def test_host_power_action_startup(self) -> None:
        self._refused_for("host_power_action", self.connection.host_power_action, "startup")

    def test_set_host_enabled(self) -> None:
        self._refused_for("set_host_enabled", self.connection.set_host_enabled, True)

    def test_get_host_cpu_stats(self) -> None:
        self._refused_for("host_cpu_stats", self.connection.get_host_cpu_stats)


class _Result(unittest.TextTestResult):
    """A text result that also remembers which tests passed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.passed: list[str] = []

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self.passed.append(_name(test))


def _name(test: Any) -> str:
    return str(test.id()).rsplit(".", 1)[-1]


def shard_tests(shard: int, shards: int) -> list[str]:
    """This shard's tests: every `shards`-th of all of them, in name order."""
    names = sorted(n for n in dir(FederationDriverConformance) if n.startswith("test_"))
    return names[shard::shards]


def report(result: _Result) -> dict[str, Any]:
    """What the wrapper needs to judge the run: Nova's tests, ours, and each one's outcome."""
    nova_tests = sorted(n for n in dir(test_virt_drivers._VirtDriverTestCase) if n[:5] == "test_")
    return {
        "nova_tests": nova_tests,
        "replaced": sorted(n for n in vars(FederationDriverConformance) if n in nova_tests),
        "passed": result.passed,
        "skipped": {_name(t): why for t, why in result.skipped},
        "failed": {_name(t): tb for t, tb in result.failures + result.errors},
    }


def main() -> int:
    """Run one shard (`AZFED_CONFORMANCE_SHARD=i/n`, default all) and print its report."""
    names = shard_tests(*_shard())
    loader = unittest.defaultTestLoader
    suite = loader.loadTestsFromNames(
        [f"{FederationDriverConformance.__name__}.{n}" for n in names], sys.modules[__name__]
    )
    runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=2, resultclass=_Result)
    result = runner.run(suite)
    assert isinstance(result, _Result)
    print(json.dumps(report(result)))
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())

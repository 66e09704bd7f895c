# A Nova (testtools) TestCase, run by unittest in Nova's venv where pytest is not installed:
# its own assert methods, not pytest's.
# ruff: noqa: PT009, PT027
"""The capacity fallback against Nova's own objects, inside the test bed's OpenStack venv:

- FederationFilter and FederationWeigher as nova-scheduler runs them: real HostStates, a real
  RequestSpec, Nova's HostWeightHandler with Nova's RAMWeigher beside ours. The filter keeps
  the fallback AZs' hosts, and the weighed order is the policy's AZ order (RAM only orders
  within an AZ); an AZ that just failed for the flavor is neither chosen nor an alternate.
- FederationDriver.spawn over moto's EC2 with InsufficientInstanceCapacity injected (moto's
  fault layer): Nova's RescheduledException with the cloud's reason, the reason in the
  server's metadata, and no EC2 instance; a permanent error still aborts the build.

Run by tests/nova/test_capacity_fallback_in_nova.py (`python -m
tests.nova.nova_capacity_fallback` with AWS_ENDPOINT_URL naming moto and
OS_NOVA_DISABLE_EVENTLET_PATCHING=1); it prints a JSON report last.
"""

from __future__ import annotations

import json
import os
import sys
import unittest
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import boto3
import fixtures

# first of Nova: its test package picks eventlet or native threads at its import
import nova.tests.unit  # noqa: F401
from azfed.clouds import UUID_TAG
from azfed.nova import driver, networks, weigher
from azfed.nova import filter as azfilter
from nova import exception, objects, test
from nova.scheduler import host_manager
from nova.scheduler import weights as nova_weights
from nova.scheduler.weights import ram
from nova.tests import fixtures as nova_fixtures
from nova.tests.unit import utils as test_utils
from nova.virt import fake

from testbed.policies import policy_doc

REGION = "ap-south-1"  # the conformance suite's shards use others
LIVE = ["pending", "running", "stopping", "stopped"]


def _moto(path: str, body: object) -> None:
    req = urllib.request.Request(
        os.environ["AWS_ENDPOINT_URL"] + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10):
        pass


def _ec2() -> Any:
    return boto3.client(
        "ec2",
        region_name=REGION,
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _host(name: str, az: str, total_ram_mb: int, free_ram_mb: int) -> host_manager.HostState:
    state = host_manager.HostState(name, name, uuid.uuid4().hex)
    state.total_usable_ram_mb, state.free_ram_mb = total_ram_mb, free_ram_mb
    state.vcpus_total, state.vcpus_used = 32, 0
    state.ram_allocation_ratio, state.cpu_allocation_ratio = 1.0, 4.0
    state.aggregates = [objects.Aggregate(metadata={"availability_zone": az})]
    return state


def _spec(flavor: str = "small") -> objects.RequestSpec:
    return objects.RequestSpec(
        flavor=objects.Flavor(name=flavor, vcpus=1, memory_mb=512),
        instance_uuid=str(uuid.uuid4()),
        project_id="p1",
        availability_zone=None,
        scheduler_hints={},
        image=objects.ImageMeta.from_dict({"properties": {}}),
        ignore_hosts=None,
        force_hosts=None,
        force_nodes=None,
    )


class FilterAndWeigherInNova(test.NoDBTestCase):  # type: ignore[misc]
    def setUp(self) -> None:
        super().setUp()
        folder = Path(self.useFixture(fixtures.TempDir()).path)
        policy = folder / "policy.json"
        # reserved-free hosts at 50% memory: over this burst threshold, so the policy bursts
        burst = {"burst": {"memory_used_pct": 10}, "return": {"memory_used_pct": 5}}
        policy.write_text(json.dumps(policy_doc(**burst)))
        self.flags(group="azfed_filter", policy_file=str(policy), state_file=None)
        self.flags(
            group="filter_scheduler",
            weight_classes=["nova.scheduler.weights.ram.RAMWeigher", azfilter.WEIGHER],
        )
        azfilter.shared_engine.cache_clear()
        self.addCleanup(azfilter.shared_engine.cache_clear)
        # local hosts with more free RAM than the public ones (empty: their use counts against
        # the policy's caps): RAMWeigher alone would put them first
        self.hosts = [
            _host("l1", "local", 65536, 40000),
            _host("l2", "local", 65536, 32768),
            _host("os1", "os", 4096, 4096),
            _host("aws1", "aws", 8192, 8192),
            _host("x1", "other", 65536, 60000),
        ]

    def _weighed(self, spec: objects.RequestSpec) -> list[str]:
        kept = azfilter.FederationFilter().filter_all(self.hosts, spec)
        handler = nova_weights.HostWeightHandler()
        weighers = [ram.RAMWeigher(), weigher.FederationWeigher()]
        return [w.obj.host for w in handler.get_weighed_objects(weighers, kept, spec)]

    def test_the_fallback_hosts_are_kept_and_weighed_in_the_policys_az_order(self) -> None:
        spec = _spec()
        self.assertEqual(["aws1", "os1", "l1", "l2"], self._weighed(spec))
        self.assertEqual(("aws", "os", "local"), azfilter.shared_engine().order(spec.instance_uuid))

    def test_an_az_that_just_failed_for_the_flavor_is_neither_chosen_nor_an_alternate(
        self,
    ) -> None:
        azfilter.shared_engine().record_failure("aws", "small", reason="no capacity")
        self.assertEqual(["os1", "l1", "l2"], self._weighed(_spec()))
        # another flavor still goes there first
        self.assertEqual("aws1", self._weighed(_spec("big"))[0])

    def test_without_the_weigher_only_the_chosen_azs_hosts_are_kept(self) -> None:
        self.flags(group="filter_scheduler", weight_classes=["nova.scheduler.weights.all_weighers"])
        kept = azfilter.FederationFilter().filter_all(self.hosts, _spec())
        self.assertEqual(["aws1"], [h.host for h in kept])

    def test_networks_none_or_auto_name_no_network_to_look_up(self) -> None:
        """Nova's `networks=none` / `auto` boots carry those words where a network id goes:
        the filter's network pin asks Neutron nothing for them (it asked, and warned, for
        every such boot)."""
        asked: list[str] = []

        def no_neutron() -> Any:
            asked.append("client")
            raise AssertionError("Neutron asked about a boot that names no network")

        pins = networks.NetworkPins(no_neutron)
        for word in ("none", "auto"):
            spec = _spec()
            spec.requested_networks = objects.NetworkRequestList(
                objects=[objects.NetworkRequest(network_id=word)]
            )
            self.assertEqual(([], []), networks.requested_networks(spec))
            self.assertIsNone(pins.az_for(spec))
        self.assertEqual([], asked)


class SpawnReschedulesOnCapacity(test.TestCase):  # type: ignore[misc]
    def setUp(self) -> None:
        super().setUp()
        self.flags(state_path=self.useFixture(fixtures.TempDir()).path)
        self.useFixture(nova_fixtures.GlanceFixture(self))
        ec2 = _ec2()
        ami = sorted(i["ImageId"] for i in ec2.describe_images(Owners=["amazon"])["Images"])[0]
        self.flags(
            group="azfed",
            provider="ec2",
            region=REGION,
            endpoint_url=os.environ["AWS_ENDPOINT_URL"],
            flavor_map={"kinda.big": "m5.large"},
            default_image=ami,
            max_attempts=2,
            throttle_retries=0,
            wait_delay_s=0.05,
            wait_attempts=100,
        )
        self.ec2 = ec2
        self.connection = driver.FederationDriver(fake.FakeVirtAPI())
        self.addCleanup(self.connection.cleanup_host, "myhostname")
        self.addCleanup(_moto, "/_fault/clear", {})
        self.ctxt = test_utils.get_test_admin_context()

    def _spawn(self) -> Any:
        instance = test_utils.get_test_instance(obj=True)
        instance.availability_zone = "aws-az"
        image_meta = test_utils.get_test_image_object(None, instance)
        return instance, lambda: self.connection.spawn(
            self.ctxt, instance, image_meta, [], "pw", {}, network_info=None
        )

    def _live(self, instance_uuid: str) -> list[Any]:
        out = self.ec2.describe_instances(
            Filters=[
                {"Name": f"tag:{UUID_TAG}", "Values": [instance_uuid]},
                {"Name": "instance-state-name", "Values": LIVE},
            ]
        )
        return [i for r in out["Reservations"] for i in r["Instances"]]

    def test_no_capacity_reschedules_with_the_clouds_reason_and_leaves_no_instance(self) -> None:
        rule = {"action": "RunInstances", "code": "InsufficientInstanceCapacity",
                "status": 500, "times": None}  # fmt: skip
        _moto("/_fault/rules", {"rules": [rule]})
        instance, spawn = self._spawn()
        err = self.assertRaises(exception.RescheduledException, spawn)
        self.assertIn("AWS has no capacity for m5.large", str(err))
        saved = objects.Instance.get_by_uuid(self.ctxt, instance.uuid)
        reason = saved.metadata[driver.FALLBACK_REASON_KEY]
        self.assertTrue(reason.startswith("aws-az: AWS has no capacity for m5.large"), reason)
        self.assertEqual([], self._live(instance.uuid))

    def test_a_permanent_error_still_aborts_the_build(self) -> None:
        rule = {"action": "RunInstances", "code": "UnauthorizedOperation", "status": 403,
                "times": 1}  # fmt: skip
        _moto("/_fault/rules", {"rules": [rule]})
        instance, spawn = self._spawn()
        self.assertRaises(exception.BuildAbortException, spawn)
        self.assertNotIn(driver.FALLBACK_REASON_KEY, instance.metadata)
        self.assertEqual([], self._live(instance.uuid))


def main() -> int:
    loader = unittest.defaultTestLoader
    suite = unittest.TestSuite(
        [
            loader.loadTestsFromTestCase(FilterAndWeigherInNova),
            loader.loadTestsFromTestCase(SpawnReschedulesOnCapacity),
        ]
    )
    result = unittest.TextTestRunner(stream=sys.stderr, verbosity=2).run(suite)
    failed = {t.id(): tb for t, tb in result.failures + result.errors}
    print(json.dumps({"run": result.testsRun, "failed": failed}))
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())

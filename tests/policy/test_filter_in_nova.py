"""FederationFilter inside the REAL nova-scheduler of the test bed, with a low threshold.

The bed is shared: other engineers' servers exist, so thresholds are set from the local load
read at the start of each test, and only this module's servers (named azfed-pol-*) are counted
and deleted. The policy file is rewritten between steps; the filter reloads it by itself. The
scheduler's filters are restored to the bed's default when the module ends.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azfed.cli import main
from azfed.policy import load_from_cloud, load_policy
from click.testing import CliRunner

from testbed.openstack import (
    AUTH,
    AZFED_FILTER,
    DEFAULT_FILTERS,
    FAKE_DRIVER,
    IMAGE,
    OpenStackBed,
)
from testbed.openstack import TestbedError as BedError  # not collected as a test class
from tests.waiting import until_sync

# the bed's reconfigure() lets go of the Popen of each service it restarts, on purpose (they
# outlive the test run); Python warns when those objects are collected
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

PREFIX = "azfed-pol-"


def _current_bed(fallback: OpenStackBed) -> OpenStackBed:
    """The bed as it runs now (a colleague may be restarting a service of it this second)."""
    for _ in range(60):
        bed = OpenStackBed.attach()
        if bed is not None:
            return bed
        time.sleep(1)
    return fallback


class Scenario:
    """The policy and state files the scheduler reads, and helpers to boot and inspect."""

    def __init__(self, bed: OpenStackBed, folder: Path) -> None:
        self.bed, self.policy, self.state = bed, folder / "policy.json", folder / "state.json"
        self.conn: Any = bed.connect()

    def write_policy(self, burst: int, ret: int, **extra: Any) -> None:
        doc = {
            "version": 1,
            "local_az": "local-az",
            "public_azs": [
                {
                    "name": "aws-az",
                    "provider": "ec2",
                    "caps": {"instances": 50, "hourly_cost": 10},
                    "prices": {"m1.tiny": 0.01, "m1.small": 0.02, "m1.medium": 0.04},
                }
            ],
            "burst": {"instances": burst},
            "return": {"instances": ret},
            "cooldown": {"return_after_s": 3, "burst_after_s": 0},
            "flavors": {"allow": ["m1.*"], "deny": ["m1.small"]},
            **extra,
        }
        self.policy.write_text(json.dumps(doc))

    def enable(self) -> None:
        """Enable the filter, re-reading the bed's state first so another engineer's driver
        settings are kept, not reverted."""
        try:
            # returns once the new scheduler has reported in, having loaded its filters;
            # raises at once if it exited (a filter it cannot load)
            _current_bed(self.bed).reconfigure(
                # the filter is under test, not the driver: compute-aws runs Nova's own
                aws_driver=FAKE_DRIVER,
                filters=[*DEFAULT_FILTERS, AZFED_FILTER],
                extra_nova={
                    "azfed_filter": {
                        "policy_file": self.policy,
                        "public_azs": "aws-az",
                        "state_file": self.state,
                    }
                },
            )
        except BedError as err:
            # never leave the bed broken
            _current_bed(self.bed).reconfigure(filters=list(DEFAULT_FILTERS))
            pytest.fail(f"nova-scheduler did not start with {AZFED_FILTER}: {err}")

    def ensure_enabled(self) -> None:
        # a colleague's reconfigure may have rewritten the scheduler's file from an older view
        conf = (self.bed.etc / "nova-scheduler.conf").read_text()
        if "FederationFilter" not in conf or str(self.policy) not in conf:
            self.enable()

    def local_instances(self) -> int:
        return load_from_cloud(self.conn, load_policy(self.policy)).local.instances

    def boot(self, flavor: str = "m1.tiny", az: str | None = None) -> tuple[Any, dict[str, Any]]:
        """Boot one server; return it (ACTIVE or ERROR) and the filter's decision for it."""
        self.ensure_enabled()
        kwargs = {"availability_zone": az} if az else {}
        server = self.conn.compute.create_server(
            name=f"{PREFIX}{uuid.uuid4().hex[:8]}",
            flavor_id=self.conn.compute.find_flavor(flavor).id,
            image_id=self.conn.image.find_image(IMAGE).id,
            networks="none",
            **kwargs,
        )
        server = self._settle(server)
        state = json.loads(self.state.read_text())
        # other sessions boot too: find this server's own decision among the recent ones
        mine = [d for d in state["recent"] if d["instance_uuid"] == server.id]
        assert mine, f"the filter made no decision for {server.id}"
        state["last_decision"] = mine[-1]
        return server, state

    def _settle(self, server: Any) -> Any:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            server = self.conn.compute.get_server(server.id)
            if server.status in ("ACTIVE", "ERROR"):
                return server
            time.sleep(0.5)
        pytest.fail(f"server {server.id} stuck in {server.status}")

    def delete(self, servers: list[Any]) -> None:
        for s in servers:
            self.conn.compute.delete_server(s)
        for s in servers:
            self.conn.compute.wait_for_delete(s, wait=120)

    def delete_all_mine(self) -> None:
        self.delete([s for s in self.conn.compute.servers() if s.name.startswith(PREFIX)])

    def explain(self, flavor: str = "m1.tiny") -> dict[str, Any]:
        env = {
            "OS_AUTH_URL": AUTH["auth_url"],
            "OS_USERNAME": AUTH["username"],
            "OS_PASSWORD": AUTH["password"],
            "OS_PROJECT_NAME": AUTH["project_name"],
            "OS_USER_DOMAIN_NAME": AUTH["user_domain_name"],
            "OS_PROJECT_DOMAIN_NAME": AUTH["project_domain_name"],
            "OS_REGION_NAME": AUTH["region_name"],
        }
        args = ["policy", "explain", "--json", "--flavor", flavor]
        args += ["--policy", str(self.policy), "--state-file", str(self.state)]
        r = CliRunner(env=env).invoke(main, ["--log-format", "json", *args])
        assert r.exit_code == 0, r.output
        doc: dict[str, Any] = json.loads(r.stdout)
        return doc


@pytest.fixture(scope="module")
def scenario(
    openstack_bed: OpenStackBed, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scenario]:
    sc = Scenario(openstack_bed, tmp_path_factory.mktemp("azfed-filter"))
    sc.write_policy(burst=1000, ret=999)
    sc.enable()
    try:
        yield sc
    finally:
        sc.delete_all_mine()
        # others must find the scheduler as the bed starts it
        _current_bed(openstack_bed).reconfigure(filters=list(DEFAULT_FILTERS))
        sc.conn.close()


@pytest.fixture(autouse=True)
def _clean(scenario: Scenario) -> Iterator[None]:
    """Each test deletes its servers: the admin project's instance quota is shared."""
    yield
    scenario.delete_all_mine()


def _az(server: Any) -> str:
    return str(server.availability_zone)


def _agree(cloud: Any, filt: dict[str, Any]) -> None:
    """The load read from Placement and Nova equals the one the filter read from host states."""
    local = filt["local"]
    for key in ("hosts", "instances", "ram_used_mb", "ram_capacity_mb", "vcpus_used"):
        assert getattr(cloud.local, key) == pytest.approx(local[key]), key
    aws = filt["public"]["aws-az"]
    # only the count: a host state counts the compute's reserved_host_memory_mb as used and
    # Placement the reserved the driver reports, and the proxy host's FederationDriver (another
    # session's, under test) may hold instances whose allocations differ from its own tracking
    assert cloud.public["aws-az"].instances == aws["instances"]


def test_boots_land_local_until_the_threshold_then_burst_then_return_after_the_cooldown(
    scenario: Scenario,
) -> None:
    base = scenario.local_instances()
    scenario.write_policy(burst=base + 2, ret=base)
    # whatever mode an earlier test left, once its cooldown has passed a load at the return
    # threshold places the first boot locally
    until_sync(lambda: scenario.explain()["cooldown_left_s"] == 0, "the cooldown", timeout=30)
    local_servers = []
    for _ in range(2):
        server, state = scenario.boot()
        assert state["last_decision"]["az"] == "local-az", state["last_decision"]
        assert _az(server) == "local-az"
        local_servers.append(server)

    cloud_before = load_from_cloud(scenario.conn, load_policy(scenario.policy))
    server, state = scenario.boot()
    assert state["last_decision"]["rule"] == "burst_threshold_exceeded"
    assert state["last_decision"]["compared"]["instances"] == {"value": base + 2, "limit": base + 2}
    assert state["last_decision"]["az"] == "aws-az"
    # the proxy host boots it, with Nova's fake driver or azfed's (moto behind it) alike
    assert (server.status, _az(server)) == ("ACTIVE", "aws-az")
    _agree(cloud_before, state["last_decision"]["load"])

    server, state = scenario.boot()  # still above the return threshold: hysteresis holds
    assert (state["last_decision"]["az"], state["last_decision"]["rule"]) == (
        "aws-az",
        "above_return_threshold",
    )
    explained = scenario.explain()
    assert explained["mode"] == "burst"
    assert explained["next_boot"]["az"] == state["last_decision"]["az"]
    assert explained["local"]["instances"] == base + 2

    scenario.delete(local_servers)
    # other sessions may have booted local servers meanwhile: the return threshold is the load
    # with ours gone (what the scenario is about), not a number fixed at the start
    now_local = scenario.local_instances()
    scenario.write_policy(burst=now_local + 2, ret=now_local)
    # the policy's return cooldown (3 s) must pass: it is what is tested
    until_sync(
        lambda: scenario.explain()["cooldown_left_s"] == 0, "the return cooldown", timeout=30
    )
    server, state = scenario.boot()
    assert (state["last_decision"]["az"], state["last_decision"]["rule"]) == (
        "local-az",
        "below_return_threshold",
    )
    assert _az(server) == "local-az"
    assert scenario.explain()["next_boot"]["az"] == "local-az"


def test_a_denied_flavor_never_bursts_even_above_the_threshold(scenario: Scenario) -> None:
    base = scenario.local_instances()
    scenario.write_policy(burst=base + 1, ret=base, cooldown={})
    _, state = scenario.boot("m1.tiny")  # whatever the mode was, this one returns local
    assert state["last_decision"]["az"] == "local-az"
    _, state = scenario.boot("m1.tiny")
    assert state["last_decision"]["az"] == "aws-az"
    server, state = scenario.boot("m1.small")
    assert (state["last_decision"]["az"], state["last_decision"]["rule"]) == (
        "local-az",
        "flavor_denied",
    )
    assert _az(server) == "local-az"


def test_an_explicit_az_is_honoured_or_refused_as_the_policy_says(scenario: Scenario) -> None:
    base = scenario.local_instances()
    scenario.write_policy(burst=base + 10, ret=base + 9, cooldown={}, explicit_az="honour")
    _, state = scenario.boot()  # whatever the mode was, this policy places local
    assert state["last_decision"]["az"] == "local-az"

    server, state = scenario.boot(az="aws-az")
    assert (state["last_decision"]["az"], state["last_decision"]["rule"]) == (
        "aws-az",
        "explicit_az_honoured",
    )
    assert (server.status, _az(server)) == ("ACTIVE", "aws-az")

    scenario.write_policy(burst=base + 10, ret=base + 9, cooldown={}, explicit_az="apply-policy")
    server, state = scenario.boot(az="aws-az")
    assert state["last_decision"]["rule"] == "explicit_az_against_policy"
    assert state["last_decision"]["az"] is None
    assert server.status == "ERROR"
    assert "No valid host" in server.fault["message"]
    log = (scenario.bed.logs / "nova-scheduler.log").read_text(errors="replace")
    # through oslo.log: Nova's [instance: ...] prefix, then the event and its fields
    line = f"[instance: {server.id}] placement.decided "
    assert line in log, "no canonical decision line in the scheduler's log"

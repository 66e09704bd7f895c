"""One federation on the bed for a test module: azfed's driver and filter in the real Nova, moto
as the AWS VPC, the real azfed receiver and agent processes feeding the bed's Gnocchi and Nova
(conftest.py makes it the `federation` fixture the e2e modules share)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import boto3
import pytest

from testbed.aws import MotoServer
from testbed.demo import Demo
from testbed.openstack import DEFAULT_FILTERS, IMAGE, OpenStackBed

T = TypeVar("T")
FLAVOR = "m1.small"  # 1024 MB: 12.5% of compute-local's 8192 MB
STEP_PCT = 12.5
LOCAL = ("local-1", "local-2")  # two boots under the threshold; the third crosses it


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 180) -> T:
    """Poll `probe` until it returns something; fail saying what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got is not None:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"after {timeout:.0f}s: {what}")
        time.sleep(0.5)


@dataclass
class Federation:
    demo: Demo
    vpc: dict[str, str]
    conn: Any
    ec2: Any
    start_pct: float
    servers: dict[str, Any] = field(default_factory=dict)

    def create(self, name: str, **extra: Any) -> Any:
        """Ask Nova for `name` (deleted with the federation), not waiting for its end state;
        `extra`: more of Nova's server attributes (`availability_zone`, `metadata`,
        `security_groups`, `networks`: none unless given)."""
        server = self.conn.compute.create_server(
            name=f"e2e-{name}-{uuid.uuid4().hex[:6]}",
            flavor_id=self.conn.compute.find_flavor(FLAVOR).id,
            image_id=self.conn.image.find_image(IMAGE).id,
            **{"networks": "none", **extra},
        )
        self.servers[name] = server
        return server

    def boot(self, name: str, **extra: Any) -> Any:
        """Boot `name` (as `create`) and wait for ACTIVE."""
        server = self.conn.compute.wait_for_server(
            self.create(name, **extra), status="ACTIVE", failures=["ERROR"], wait=300, interval=0.5
        )
        self.servers[name] = server
        return server

    def ssh_group(self, prefix: str) -> Any:
        """A new security group allowing SSH from 10.0.0.0/8 (the caller deletes it)."""
        group = self.conn.network.create_security_group(name=f"{prefix}-{uuid.uuid4().hex[:6]}")
        self.conn.network.create_security_group_rule(
            security_group_id=group.id,
            direction="ingress",
            ethertype="IPv4",
            protocol="tcp",
            port_range_min=22,
            port_range_max=22,
            remote_ip_prefix="10.0.0.0/8",
        )
        return group

    def ensure(self, name: str) -> Any:
        """The server the workflow boots as `name`, booted now if no test has yet.

        Boots happen in the workflow's order whatever order the tests run in: the local ones
        first (they bring the local AZ over the burst threshold), then each burst one.
        """
        if name not in self.servers:
            if not name.startswith("local-"):
                for local in LOCAL:
                    self.ensure(local)
            self.boot(name)
        return self.servers[name]

    def ec2_instances_for(self, server_id: str) -> list[dict[str, Any]]:
        pages = self.ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "tag:azfed:instance-uuid", "Values": [server_id]}]
        )
        return [i for p in pages for r in p["Reservations"] for i in r["Instances"]]

    def cpu_measures(self, server_id: str) -> list[Any]:
        """The server's `cpu` measures in Gnocchi, processed now ([timestamp, granularity,
        value] rows); none before the receiver wrote the first (the metric comes with it)."""
        try:
            rows: list[Any] = self.demo.gnocchi().metric.get_measures(
                "cpu", resource_id=server_id, refresh=True
            )
        except Exception:  # no such metric or resource yet
            return []
        return rows

    def metadata(self, server_id: str) -> dict[str, str]:
        return dict(self.conn.compute.get_server_metadata(server_id).metadata)


def federation_in(openstack_bed: OpenStackBed, moto: MotoServer) -> Iterator[Federation]:
    """azfed switched on in the bed, with thresholds set from the local load found at start:
    two m1.small boots stay local, the third crosses the burst threshold."""
    demo = Demo(servers=0, flavor=FLAVOR, bed=openstack_bed)
    demo.moto_endpoint = moto.endpoint
    demo.home.mkdir(parents=True, exist_ok=True)
    # the filter's and the receiver's records start with this federation (a reused bed keeps
    # an earlier session's, whose decisions the dashboard would show beside this one's)
    for kept in ("filter-state.json", "receiver.db"):
        (demo.home / kept).unlink(missing_ok=True)
    vpc = demo.make_vpc()
    conn = openstack_bed.connect()
    demo.write_policy()  # provisional: load_from_cloud needs the AZ names
    start_pct, _ = demo.local_memory_pct(conn)
    policy = demo.write_policy(
        burst_pct=start_pct + 1.5 * STEP_PCT, return_pct=start_pct + 0.5 * STEP_PCT, cooldown_s=2
    )
    demo.enable_azfed(vpc, policy)
    demo.start_receiver_and_agent(vpc, policy)
    ec2 = boto3.client("ec2", **moto.client_kwargs())
    fed = Federation(demo, vpc, conn, ec2, start_pct)
    yield fed
    demo.stop_receiver_and_agent()
    for server in fed.servers.values():
        conn.compute.delete_server(server, ignore_missing=True)
    for server in fed.servers.values():
        conn.compute.wait_for_delete(server, wait=120)
    openstack_bed.reconfigure(filters=list(DEFAULT_FILTERS))
    conn.close()

"""Capacity fallback inside one boot, in the bed (issue 15): real nova-scheduler with azfed's
filter and weigher, two public AZs (compute-aws in aws-az on moto's us-east-1, compute-aws2 in
aws-az2 on us-west-2), the receiver between the proxy hosts and the filter.

us-east-1 answers InsufficientInstanceCapacity to every RunInstances: the boot the policy sends
to aws-az is rescheduled by Nova to its alternate in aws-az2 and ends ACTIVE there; the next
boots skip aws-az until its back-off ends, then try it again.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from testbed.aws import MotoServer
from testbed.demo import FLAVOR_MAP, RECEIVER_PORT
from testbed.openstack import AZFED_FILTER, DEFAULT_FILTERS, IMAGE, OpenStackBed
from tests.e2e.federation import FLAVOR, Federation

pytestmark = pytest.mark.e2e

FIRST, SECOND = ("aws-az", "us-east-1"), ("aws-az2", "us-west-2")
HOST2 = "compute-aws2"
BACKOFF_S = 20
WEIGHER = "azfed.nova.weigher.FederationWeigher"


def _vpc(moto: MotoServer, region: str) -> dict[str, str]:
    ec2 = boto3.client("ec2", **{**moto.client_kwargs(), "region_name": region})
    vpc = ec2.create_vpc(CidrBlock="10.43.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.43.1.0/24")["Subnet"]["SubnetId"]
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    return {"subnet": subnet, "ami": ami}


def _writer_secret(federation: Federation, writer: str) -> Path:
    """A proxy host's secret for signing its capacity events, where the receiver looks."""
    secret = secrets.token_hex(32)
    (federation.demo.home / "secrets" / f"agents_{writer}").write_text(secret + "\n")
    path = federation.demo.home / f"{writer}.secret"
    path.write_text(secret + "\n")
    return path


def _two_az_policy(federation: Federation) -> dict[str, Any]:
    policy = json.loads((federation.demo.home / "policy.json").read_text())
    first = policy["public_azs"][0]
    policy["public_azs"] = [
        {**first, "name": FIRST[0], "priority": 1},
        {**first, "name": SECOND[0], "priority": 2},
    ]
    policy["fallback"] = {
        "capacity_backoff": {"initial_s": BACKOFF_S, "max_s": 4 * BACKOFF_S},
        "when_public_unavailable": "local",
    }
    return dict(policy)


@pytest.fixture(scope="module")
def two_azs(
    federation: Federation, openstack_bed: OpenStackBed, moto: MotoServer
) -> Iterator[dict[str, Any]]:
    """aws-az2 beside aws-az, the filter told of both and ordering them (FederationWeigher),
    both proxy hosts reporting capacity events to the receiver; all undone afterwards."""
    policy_file = federation.demo.home / "policy.json"
    saved_policy = policy_file.read_text()
    west = _vpc(moto, SECOND[1])
    receiver = f"http://127.0.0.1:{RECEIVER_PORT}"
    openstack_bed.add_proxy_host(
        HOST2,
        SECOND[0],
        {
            "provider": "ec2",
            "region": SECOND[1],
            "endpoint_url": moto.endpoint,
            "subnet_id": west["subnet"],
            "flavor_map": FLAVOR_MAP,
            "default_image": west["ami"],
            "max_instances": 100,
            "receiver_url": receiver,
            "receiver_secret_file": _writer_secret(federation, HOST2),
        },
    )
    openstack_bed.reconfigure(
        extra_nova={
            "azfed": {
                "receiver_url": receiver,
                "receiver_secret_file": _writer_secret(federation, "compute-aws"),
            },
            "azfed_filter": {"public_azs": f"{FIRST[0]},{SECOND[0]}", "receiver_url": receiver},
            "filter_scheduler": {
                "weight_classes": f"nova.scheduler.weights.all_weighers,{WEIGHER}"
            },
        }
    )
    policy_file.write_text(json.dumps(_two_az_policy(federation), indent=2) + "\n")
    try:
        yield {"west": west}
    finally:
        moto.post("/_fault/clear")
        policy_file.write_text(saved_policy)
        for name in [n for n in federation.servers if n.startswith("fallback-")]:
            server = federation.servers.pop(name)
            federation.conn.compute.delete_server(server, ignore_missing=True)
            federation.conn.compute.wait_for_delete(server, wait=120)
        openstack_bed.reconfigure(
            extra_nova={
                "azfed_filter": {"public_azs": FIRST[0]},
                "filter_scheduler": {"weight_classes": "nova.scheduler.weights.all_weighers"},
            },
            filters=[*DEFAULT_FILTERS, AZFED_FILTER],
        )
        openstack_bed.remove_proxy_host(HOST2, SECOND[0])


def _boot(federation: Federation, name: str) -> Any:
    """A boot the policy places (no AZ asked), preferring the public AZs (scheduler hint)."""
    conn = federation.conn
    server = conn.compute.create_server(
        name=f"e2e-{name}-{uuid.uuid4().hex[:6]}",
        flavor_id=conn.compute.find_flavor(FLAVOR).id,
        image_id=conn.image.find_image(IMAGE).id,
        networks="none",
        scheduler_hints={"azfed:burst": "prefer"},
    )
    federation.servers[name] = server
    return conn.compute.wait_for_server(
        server, status="ACTIVE", failures=["ERROR"], wait=300, interval=0.5
    )


def _decision(federation: Federation, server_id: str) -> dict[str, Any]:
    state = json.loads((federation.demo.home / "filter-state.json").read_text())
    [found] = [d for d in state["recent"] if d["instance_uuid"] == server_id]
    return dict(found)


def _live(moto: MotoServer, region: str) -> set[str]:
    """Nova UUIDs of the live instances azfed launched in a region."""
    ec2 = boto3.client("ec2", **{**moto.client_kwargs(), "region_name": region})
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[
            {"Name": "tag-key", "Values": ["azfed:instance-uuid"]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]},
        ]
    )
    return {
        t["Value"]
        for p in pages
        for r in p["Reservations"]
        for i in r["Instances"]
        for t in i["Tags"]
        if t["Key"] == "azfed:instance-uuid"
    }


def test_no_capacity_in_the_first_az_falls_back_within_the_boot_and_backs_off(
    federation: Federation, two_azs: dict[str, Any], moto: MotoServer
) -> None:
    """The first boot is decided for aws-az, fails there for lack of capacity, and ends ACTIVE
    in aws-az2 within the same request (the cloud's reason kept on the server); the next boot
    skips aws-az while it backs off; once the back-off is over (and capacity is back), a boot
    goes to aws-az again. Neither cloud keeps an instance Nova does not have."""
    moto.fault(
        "RunInstances",
        "InsufficientInstanceCapacity",
        status=500,
        times=None,
        region=FIRST[1],
        message="We currently do not have sufficient t3.small capacity",
    )
    first = _boot(federation, "fallback-1")
    failed_at = time.monotonic()
    assert (first.availability_zone, first.compute_host) == (SECOND[0], HOST2)
    assert _decision(federation, first.id)["az"] == FIRST[0]  # decided aws-az, landed aws-az2
    reason = federation.conn.compute.get_server_metadata(first).metadata["azfed_fallback_reason"]
    assert reason.startswith(f"{FIRST[0]}: AWS has no capacity for t3.small"), reason

    second = _boot(federation, "fallback-2")
    assert second.availability_zone == SECOND[0]
    decision = _decision(federation, second.id)
    assert decision["az"] == SECOND[0]
    assert any("capacity failure" in str(s) for s in decision["skipped"]), decision["skipped"]

    moto.post("/_fault/clear")
    time.sleep(max(0.0, BACKOFF_S + 3 - (time.monotonic() - failed_at)))
    third = _boot(federation, "fallback-3")
    assert (third.availability_zone, third.compute_host) == (FIRST[0], "compute-aws")

    ids = {first.id, second.id, third.id}
    east, west = _live(moto, FIRST[1]), _live(moto, SECOND[1])
    assert (east & ids, west & ids) == ({third.id}, {first.id, second.id})

    # what the filter read: the proxy hosts' reports, kept by the receiver
    url = f"http://127.0.0.1:{RECEIVER_PORT}/v1/capacity-events?after=0"
    with urllib.request.urlopen(url, timeout=5) as resp:
        events = json.load(resp)["events"]
    outcomes = {(e["instance_uuid"], e["az"], e["outcome"]) for e in events}
    assert {
        (first.id, FIRST[0], "failed"),
        (first.id, SECOND[0], "launched"),
        (third.id, FIRST[0], "launched"),
    } <= outcomes, outcomes

"""Fixtures for the cloud backends: a fresh VPC in moto per test, never a moto reset.

Resetting moto would pull resources from under anything else using the session's moto (the
proxy compute host in the Nova tests), so each test builds and tags its own network instead.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aioboto3
import pytest
from azfed.clouds.ec2 import Ec2Backend, Ec2Settings

from testbed.aws import REGION, MotoServer


@dataclass(frozen=True)
class Network:
    """A VPC subnet with a security group, a key pair and an AMI, ready for RunInstances."""

    vpc_id: str
    subnet_id: str
    zone: str
    sg_id: str
    key_name: str
    ami: str
    other_ami: str


async def make_network(client: Any, zone: str = f"{REGION}a") -> Network:
    """Build one isolated network in moto (the same calls an operator's Terraform would make)."""
    tag = uuid.uuid4().hex[:8]
    vpc = (await client.create_vpc(CidrBlock="10.20.0.0/16"))["Vpc"]["VpcId"]
    subnet = await client.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24", AvailabilityZone=zone)
    sg = await client.create_security_group(
        GroupName=f"azfed-{tag}", Description="azfed burst", VpcId=vpc
    )
    key = f"azfed-{tag}"
    await client.create_key_pair(KeyName=key)
    images = (await client.describe_images(Owners=["amazon"]))["Images"]
    amis = sorted(i["ImageId"] for i in images)
    return Network(vpc, subnet["Subnet"]["SubnetId"], zone, sg["GroupId"], key, amis[0], amis[1])


@pytest.fixture
async def ec2_client(moto: MotoServer) -> AsyncIterator[Any]:
    """A plain aioboto3 client, used to look at moto the way an operator would."""
    async with aioboto3.Session().client("ec2", **moto.client_kwargs()) as client:
        yield client


@pytest.fixture
async def network(ec2_client: Any) -> Network:
    return await make_network(ec2_client)


def settings_for(moto: MotoServer, net: Network, **overrides: Any) -> Ec2Settings:
    base: dict[str, Any] = {
        "region": REGION,
        "endpoint_url": moto.endpoint,
        "subnet_id": net.subnet_id,
        "security_group_ids": (net.sg_id,),
        "key_name": net.key_name,
        "max_attempts": 3,
        "throttle_retries": 1,
        "throttle_backoff_s": 0.05,
        "wait_delay_s": 0.2,
        "wait_attempts": 50,
    }
    base.update(overrides)
    return Ec2Settings(**base)


@pytest.fixture
async def backend(moto: MotoServer, network: Network) -> AsyncIterator[Ec2Backend]:
    b = Ec2Backend(settings_for(moto, network))
    yield b
    await b.close()

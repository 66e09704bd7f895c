"""The AWS stand-in is real enough: EC2 in a VPC subnet, and faults botocore really handles."""

from __future__ import annotations

from typing import Any

import aioboto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from testbed.aws import MotoServer


async def _subnet(ec2: Any) -> str:
    vpc = (await ec2.create_vpc(CidrBlock="10.20.0.0/16"))["Vpc"]["VpcId"]
    sub = await ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")
    return str(sub["Subnet"]["SubnetId"])


async def _ami(ec2: Any) -> str:
    images = (await ec2.describe_images(Owners=["amazon"]))["Images"]
    return str(images[0]["ImageId"])


async def test_an_instance_launched_in_a_vpc_subnet_is_described_there(ec2: Any) -> None:
    subnet = await _subnet(ec2)
    run = await ec2.run_instances(
        ImageId=await _ami(ec2), InstanceType="t3.micro", MinCount=1, MaxCount=1, SubnetId=subnet
    )
    iid = run["Instances"][0]["InstanceId"]
    found = [
        i
        async for page in ec2.get_paginator("describe_instances").paginate(InstanceIds=[iid])
        for r in page["Reservations"]
        for i in r["Instances"]
    ]
    assert [(i["InstanceId"], i["SubnetId"], i["InstanceType"]) for i in found] == [
        (iid, subnet, "t3.micro")
    ]


async def test_a_terminated_instances_address_can_be_launched_again(ec2: Any) -> None:
    """As in EC2, a terminated instance's private address is free for the next launch (a
    Neutron port's address comes back after its server is deleted); moto alone keeps it."""
    subnet, ami = await _subnet(ec2), await _ami(ec2)
    kwargs = {"ImageId": ami, "MinCount": 1, "MaxCount": 1, "SubnetId": subnet}
    first = await ec2.run_instances(PrivateIpAddress="10.20.1.77", **kwargs)
    await ec2.terminate_instances(InstanceIds=[first["Instances"][0]["InstanceId"]])
    again = await ec2.run_instances(PrivateIpAddress="10.20.1.77", **kwargs)
    assert again["Instances"][0]["PrivateIpAddress"] == "10.20.1.77"


async def test_injected_throttling_is_retried_by_botocore(aws: MotoServer) -> None:
    """Two RequestLimitExceeded answers, then success: botocore's standard mode retries them."""
    aws.fault("DescribeVpcs", "RequestLimitExceeded", status=503, times=2)
    cfg = Config(retries={"mode": "standard", "total_max_attempts": 4})
    async with aioboto3.Session().client("ec2", config=cfg, **aws.client_kwargs()) as ec2:
        vpcs = await ec2.describe_vpcs()
    assert "Vpcs" in vpcs
    stats = aws.stats()
    assert stats["injected"]["DescribeVpcs"] == 2
    assert stats["hits"]["DescribeVpcs"] == 3


async def test_injected_capacity_error_surfaces_with_its_ec2_error_code(
    ec2: Any, aws: MotoServer
) -> None:
    """EC2 sends it as a 500, so botocore retries it first: here it persists, as it does in AWS."""
    ami = await _ami(ec2)
    aws.fault("RunInstances", "InsufficientInstanceCapacity", status=500, times=None)
    with pytest.raises(ClientError) as caught:
        await ec2.run_instances(ImageId=ami, InstanceType="m5.large", MinCount=1, MaxCount=1)
    assert caught.value.response["Error"]["Code"] == "InsufficientInstanceCapacity"
    assert aws.stats()["hits"]["RunInstances"] > 1  # retried before giving up


async def test_reset_empties_moto_between_tests(aws: MotoServer, ec2: Any) -> None:
    await ec2.run_instances(ImageId=await _ami(ec2), MinCount=2, MaxCount=2)
    aws.reset()
    described = await ec2.describe_instances()
    assert described["Reservations"] == []


async def test_a_fault_can_hit_one_region_only(aws: MotoServer) -> None:
    """A rule with a region fails only requests signed for it: two public AZs in two regions,
    one of them out of capacity."""
    aws.fault("DescribeVpcs", "InsufficientInstanceCapacity", times=None, region="us-east-1")
    kwargs = {k: v for k, v in aws.client_kwargs().items() if k != "region_name"}
    cfg = Config(retries={"mode": "standard", "total_max_attempts": 1})
    async with aioboto3.Session().client(
        "ec2", region_name="us-west-2", config=cfg, **kwargs
    ) as west:
        assert "Vpcs" in await west.describe_vpcs()
    async with aioboto3.Session().client(
        "ec2", region_name="us-east-1", config=cfg, **kwargs
    ) as east:
        with pytest.raises(ClientError) as caught:
            await east.describe_vpcs()
    assert caught.value.response["Error"]["Code"] == "InsufficientInstanceCapacity"
    assert aws.stats()["injected"]["DescribeVpcs"] == 1

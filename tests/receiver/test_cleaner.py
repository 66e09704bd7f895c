"""Cleaning a public orphan terminates it on EC2 (moto over HTTP), and only if EC2 still says
it is the orphan's instance."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azfed.config import parse_config
from azfed.errors import PermanentError
from azfed.receiver.cleaner import cloud_cleaner
from azfed.receiver.reconcile import Cleaner, Orphan

from testbed.aws import REGION, MotoServer


def _cleaner(moto: MotoServer, action: str = "clean") -> Cleaner | None:
    cfg = parse_config(
        {
            "aws": {"region": REGION, "endpoint_url": moto.endpoint},
            "reconcile": {"action": action},
        }
    )
    return cloud_cleaner(cfg)


async def _tagged_instance(ec2: Any, nova_uuid: str) -> str:
    ami = (await ec2.describe_images(Owners=["amazon"]))["Images"][0]["ImageId"]
    run = await ec2.run_instances(
        ImageId=ami,
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [{"Key": "azfed:instance-uuid", "Value": nova_uuid}],
            }
        ],
    )
    return str(run["Instances"][0]["InstanceId"])


async def _state(ec2: Any, iid: str) -> str:
    found = await ec2.describe_instances(InstanceIds=[iid])
    return str(found["Reservations"][0]["Instances"][0]["State"]["Name"])


def test_without_clean_or_without_aws_there_is_no_cleaner(aws: MotoServer) -> None:
    assert _cleaner(aws, action="report") is None
    assert cloud_cleaner(parse_config({"reconcile": {"action": "clean"}})) is None


async def test_a_public_orphan_is_terminated(aws: MotoServer, ec2: Any) -> None:
    nova_uuid = str(uuid.uuid4())
    iid = await _tagged_instance(ec2, nova_uuid)
    clean = _cleaner(aws)
    assert clean is not None
    await clean(Orphan("public_without_nova", nova_uuid, "ec2", iid, "test"))
    # moto terminates at once; AWS would answer shutting-down first
    assert await _state(ec2, iid) == "terminated"


async def test_an_instance_tagged_for_another_uuid_is_left_running(
    aws: MotoServer, ec2: Any
) -> None:
    """A stale or forged report names the wrong instance: EC2's own tag decides."""
    iid = await _tagged_instance(ec2, str(uuid.uuid4()))
    clean = _cleaner(aws)
    assert clean is not None
    with pytest.raises(PermanentError, match="not terminating"):
        await clean(Orphan("public_without_nova", str(uuid.uuid4()), "ec2", iid, "test"))
    assert await _state(ec2, iid) == "running"

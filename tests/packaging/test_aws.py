"""The AWS side of the install guide, against moto over HTTP: role, instance, user data, secret."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import aioboto3
import pytest
from azfed.bootstrap import render_file
from azfed.bootstrap_secret import SecretFetchError, fetch_secret, require_imdsv2
from azfed.cli import main
from click.testing import CliRunner

from testbed.aws import ACCOUNT, MotoServer
from tests.packaging.conftest import WriteSettings
from tests.packaging.test_iam import policy_text

PARAMETER = "/azfed/agent/push-secret"
SECRET = "k3y-0f-the-agent-Zx81"
EC2_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


async def make_instance_profile(aws: MotoServer) -> str:
    """The guide's IAM steps: the agent policy, a role EC2 may assume, an instance profile."""
    async with aioboto3.Session().client("iam", **aws.client_kwargs()) as iam:
        policy = await iam.create_policy(
            PolicyName="azfed-agent", PolicyDocument=policy_text("agent-policy.json")
        )
        await iam.create_role(
            RoleName="azfed-agent", AssumeRolePolicyDocument=json.dumps(EC2_TRUST)
        )
        await iam.attach_role_policy(RoleName="azfed-agent", PolicyArn=policy["Policy"]["Arn"])
        await iam.create_instance_profile(InstanceProfileName="azfed-agent")
        await iam.add_role_to_instance_profile(
            InstanceProfileName="azfed-agent", RoleName="azfed-agent"
        )
    return f"arn:aws:iam::{ACCOUNT}:instance-profile/azfed-agent"


async def first_image(ec2: Any) -> str:
    images = await ec2.describe_images(Owners=["amazon"])
    return str(images["Images"][0]["ImageId"])


async def test_agent_instance_launches_with_the_rendered_user_data_and_imdsv2_required(
    aws: MotoServer, ec2: Any, write_settings: WriteSettings
) -> None:
    user_data = render_file(write_settings("ec2", "wheel"))
    profile = await make_instance_profile(aws)
    out = await ec2.run_instances(
        ImageId=await first_image(ec2),
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        UserData=user_data,
        IamInstanceProfile={"Arn": profile},
        MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled"},
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "azfed-agent"}]}
        ],
    )
    instance_id = out["Instances"][0]["InstanceId"]

    attr = await ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    assert base64.b64decode(attr["UserData"]["Value"]).decode() == user_data
    described = (await ec2.describe_instances(InstanceIds=[instance_id]))["Reservations"][0]
    instance = described["Instances"][0]
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert instance["IamInstanceProfile"]["Arn"].endswith("instance-profile/azfed-agent")


async def put_secret(aws: MotoServer, value: str, kind: str = "SecureString") -> None:
    async with aioboto3.Session().client("ssm", **aws.client_kwargs()) as ssm:
        await ssm.put_parameter(Name=PARAMETER, Value=value, Type=kind, Overwrite=True)


async def test_fetch_secret_writes_the_securestring_root_only(
    aws: MotoServer, tmp_path: Path
) -> None:
    await put_secret(aws, SECRET)
    out = tmp_path / "etc" / "push-secret"
    size = await fetch_secret(PARAMETER, "us-east-1", out)
    assert out.read_text() == SECRET
    assert size == len(SECRET)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert aws.stats()["hits"]["GetParameter"] == 1


async def test_fetch_secret_refuses_a_plain_string_parameter(
    aws: MotoServer, tmp_path: Path
) -> None:
    await put_secret(aws, SECRET, kind="String")
    out = tmp_path / "push-secret"
    with pytest.raises(SecretFetchError, match="not a SecureString") as err:
        await fetch_secret(PARAMETER, "us-east-1", out)
    assert SECRET not in str(err.value)
    assert not out.exists()


async def test_fetch_secret_names_a_missing_parameter_and_what_to_check(
    aws: MotoServer, tmp_path: Path
) -> None:
    with pytest.raises(SecretFetchError, match=r"/azfed/agent/push-secret.*ParameterNotFound"):
        await fetch_secret(PARAMETER, "us-east-1", tmp_path / "push-secret")


async def test_boot_refuses_an_instance_whose_metadata_service_answers_imdsv1(
    aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto's metadata endpoint answers without a token, as IMDS does with HttpTokens=optional."""
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", aws.endpoint)
    with pytest.raises(SecretFetchError, match="IMDSv1 is on"):
        await require_imdsv2()


def test_fetch_secret_command_stops_before_reading_ssm_when_imdsv1_is_on(
    aws: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", aws.endpoint)
    out = tmp_path / "push-secret"
    args = ["cloud-init", "fetch-secret", "--parameter", PARAMETER, "--region", "us-east-1"]
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 1
    assert "IMDSv1 is on" in result.output
    assert not out.exists()
    assert aws.stats()["hits"].get("GetParameter", 0) == 0

"""The Neutron subnet that mirrors a VPC subnet leaves AWS's reserved addresses out."""

from __future__ import annotations

import pytest
from azfed.cli import EXIT_FAILED, main
from azfed.errors import InputError
from azfed.neutron.subnets import ec2_subnet_of, plan
from click.testing import CliRunner

from testbed.aws import MotoServer


def test_plan_leaves_out_the_five_addresses_aws_reserves() -> None:
    """10.0.1.0/24: .0 network, .1 router (the gateway), .2 DNS, .3 reserved, .255 broadcast."""
    p = plan({"SubnetId": "subnet-1", "VpcId": "vpc-1", "CidrBlock": "10.0.1.0/24"})
    assert (p.cidr, p.gateway_ip, p.pool_start, p.pool_end) == (
        "10.0.1.0/24",
        "10.0.1.1",
        "10.0.1.4",
        "10.0.1.254",
    )
    attrs = p.subnet_attrs()
    assert attrs["enable_dhcp"] is False  # the VPC's DHCP serves the instances
    assert ec2_subnet_of({"tags": ["other", *p.tags]}) == "subnet-1"


def test_plan_of_the_smallest_subnet() -> None:
    """A /28 (AWS's smallest) keeps 11 usable addresses: .4 to .14."""
    p = plan({"SubnetId": "subnet-1", "VpcId": "vpc-1", "CidrBlock": "10.0.0.16/28"})
    assert (p.pool_start, p.pool_end) == ("10.0.0.20", "10.0.0.30")


@pytest.mark.parametrize("cidr", ["10.0.0.0/29", "nonsense", None])
def test_plan_refuses_what_aws_cannot_have(cidr: object) -> None:
    """A CIDR AWS would not give is refused naming the key and the value."""
    with pytest.raises(InputError, match="CidrBlock"):
        plan({"SubnetId": "subnet-1", "VpcId": "vpc-1", "CidrBlock": cidr})


def test_untagged_subnet_mirrors_nothing() -> None:
    assert ec2_subnet_of({"tags": []}) is None
    assert ec2_subnet_of({}) is None


def test_mirroring_a_subnet_ec2_does_not_have_says_so(aws: MotoServer) -> None:
    """`azfed network mirror` of a subnet EC2 does not know: EC2's answer, no traceback, and
    nothing asked of OpenStack."""
    r = CliRunner().invoke(
        main,
        [
            "network",
            "mirror",
            "--subnet",
            "subnet-0000000000000000f",
            "--availability-zone",
            "aws-az",
        ],
        env={"AWS_ENDPOINT_URL": aws.endpoint},
    )
    assert r.exit_code == EXIT_FAILED, r.output
    assert "subnet-0000000000000000f" in r.stderr
    assert "Traceback" not in r.output + r.stderr

"""The Neutron subnet that mirrors a VPC subnet leaves AWS's reserved addresses out."""

from __future__ import annotations

import pytest
from azfed.cli import EXIT_FAILED, EXIT_INVALID, main
from azfed.errors import InputError
from azfed.neutron.subnets import ec2_subnet_of, os_subnet_of, plan, plan_public
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


def _public_subnet(**over: object) -> dict[str, object]:
    return {
        "id": "5ub",
        "cidr": "10.42.1.0/24",
        "gateway_ip": "10.42.1.1",
        "allocation_pools": [
            {"start": "10.42.1.10", "end": "10.42.1.99"},
            {"start": "10.42.1.200", "end": "10.42.1.250"},
        ],
        **over,
    }


def test_public_plan_keeps_the_public_subnets_gateway_and_pools() -> None:
    """A public OpenStack's subnet: the local pool hands out only what the public one can."""
    p = plan_public(_public_subnet(), "public")
    attrs = p.subnet_attrs()
    assert (attrs["cidr"], attrs["gateway_ip"], attrs["enable_dhcp"]) == (
        "10.42.1.0/24",
        "10.42.1.1",
        False,
    )
    assert attrs["allocation_pools"] == [
        {"start": "10.42.1.10", "end": "10.42.1.99"},
        {"start": "10.42.1.200", "end": "10.42.1.250"},
    ]
    assert os_subnet_of({"tags": list(p.tags)}) == "5ub"
    assert ec2_subnet_of({"tags": list(p.tags)}) is None
    assert p.network_tags("os-az")[-1] == "azfed:az=os-az"


@pytest.mark.parametrize(
    ("over", "key"),
    [
        ({"allocation_pools": [{"start": "10.9.0.1", "end": "10.9.0.9"}]}, "allocation_pools"),
        ({"allocation_pools": []}, "allocation_pools"),
        ({"cidr": "fd00::/64"}, "cidr"),
    ],
)
def test_public_plan_refuses_what_it_cannot_mirror(over: dict[str, object], key: str) -> None:
    """A pool outside the CIDR, no pool, or an IPv6 subnet: refused naming the key."""
    with pytest.raises(InputError, match=key):
        plan_public(_public_subnet(**over), "public")


def test_mirroring_a_public_openstack_subnet_needs_its_cloud() -> None:
    """--provider openstack without --public-cloud: a usage error naming the option, before
    any cloud is asked."""
    r = CliRunner().invoke(
        main,
        [
            "network",
            "mirror",
            "--provider",
            "openstack",
            "--subnet",
            "x",
            "--availability-zone",
            "os-az",
        ],
    )
    assert r.exit_code == EXIT_INVALID, r.output
    assert "--public-cloud" in r.stderr

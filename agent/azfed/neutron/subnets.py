"""A VPC subnet mirrored by a Neutron network and subnet, so Neutron's IPAM hands out the
addresses burst VMs get in EC2.

The Neutron subnet has the VPC subnet's CIDR, its gateway is the VPC router (the CIDR's first
host), and its allocation pool leaves out the five addresses AWS reserves in every subnet
(the network address, the router, the DNS server, one for future use, and the broadcast
address). DHCP is off: the VPC's own DHCP serves the instances. The subnet carries the tag
`azfed:ec2-subnet=<subnet id>`, which the ML2 driver and the Nova driver read; an operator
who makes the network by hand adds the same tag.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from azfed.errors import InputError, Problem

if TYPE_CHECKING:  # the mirror's Neutron calls are openstacksdk's
    from openstack.connection import Connection

SUBNET_TAG_PREFIX: Final = "azfed:ec2-subnet="
VPC_TAG_PREFIX: Final = "azfed:vpc="
# on the network: the public AZ its servers go to (the scheduler filter reads it)
AZ_TAG_PREFIX: Final = "azfed:az="
# the mirrored networks' physical network name (a flat provider network: nothing is plugged
# on the local side, the ML2 driver binds its ports on the proxy hosts)
PHYSICAL_NETWORK: Final = "azfed"
# AWS reserves the first four addresses and the last one of every subnet
_RESERVED_HEAD: Final = 4


def ec2_subnet_of(subnet: Mapping[str, Any]) -> str | None:
    """The VPC subnet a Neutron subnet mirrors, from its tag."""
    for tag in subnet.get("tags") or []:
        if str(tag).startswith(SUBNET_TAG_PREFIX):
            return str(tag)[len(SUBNET_TAG_PREFIX) :]
    return None


@dataclass(frozen=True)
class SubnetPlan:
    """The Neutron network and subnet that mirror one VPC subnet."""

    ec2_subnet: str
    vpc_id: str
    cidr: str
    gateway_ip: str
    pool_start: str
    pool_end: str

    @property
    def tags(self) -> list[str]:
        return [SUBNET_TAG_PREFIX + self.ec2_subnet, VPC_TAG_PREFIX + self.vpc_id]

    def network_tags(self, availability_zone: str) -> list[str]:
        return [*self.tags, AZ_TAG_PREFIX + availability_zone]

    def subnet_attrs(self) -> dict[str, Any]:
        return {
            "ip_version": 4,
            "cidr": self.cidr,
            "gateway_ip": self.gateway_ip,
            "enable_dhcp": False,
            "allocation_pools": [{"start": self.pool_start, "end": self.pool_end}],
        }


def plan(ec2_subnet: Mapping[str, Any]) -> SubnetPlan:
    """The mirror of a DescribeSubnets item."""
    subnet_id = str(ec2_subnet.get("SubnetId"))
    try:
        net = ipaddress.IPv4Network(str(ec2_subnet.get("CidrBlock")))
    except ValueError as err:
        raise InputError(
            subnet_id, [Problem("CidrBlock", ec2_subnet.get("CidrBlock"), str(err))]
        ) from err
    if net.num_addresses < 16:  # AWS's smallest subnet is a /28
        raise InputError(
            subnet_id, [Problem("CidrBlock", str(net), "AWS subnets are /28 or larger")]
        )
    first = net.network_address
    return SubnetPlan(
        ec2_subnet=subnet_id,
        vpc_id=str(ec2_subnet.get("VpcId")),
        cidr=str(net),
        gateway_ip=str(first + 1),
        pool_start=str(first + _RESERVED_HEAD),
        pool_end=str(net.broadcast_address - 1),
    )


def find_mirror(conn: Connection, ec2_subnet: str) -> Any | None:
    """The Neutron subnet already mirroring this VPC subnet (openstacksdk), if any."""
    found = list(conn.network.subnets(tags=SUBNET_TAG_PREFIX + ec2_subnet))
    return found[0] if found else None


def az_of(network: Mapping[str, Any]) -> str | None:
    """The public AZ a mirrored network's servers go to, from its tag."""
    for tag in network.get("tags") or []:
        if str(tag).startswith(AZ_TAG_PREFIX):
            return str(tag)[len(AZ_TAG_PREFIX) :]
    return None


def mirror(
    conn: Connection,
    ec2_item: Mapping[str, Any],
    name: str,
    *,
    shared: bool,
    availability_zone: str,
) -> tuple[Any, bool]:
    """Make (or find) the Neutron subnet mirroring a VPC subnet; (subnet, created). The
    network is tagged with the public AZ whose proxy host launches in that VPC.

    Idempotent: a second run finds the tagged subnet and checks it still matches.
    """
    want = plan(ec2_item)
    have = find_mirror(conn, want.ec2_subnet)
    if have is not None:
        if have.cidr != want.cidr:
            raise InputError(
                f"Neutron subnet {have.id}",
                [
                    Problem(
                        "cidr", have.cidr, f"mirrors {want.ec2_subnet}, whose CIDR is {want.cidr}"
                    )
                ],
            )
        return have, False
    network = conn.network.create_network(
        name=name,
        shared=shared,
        # one flat provider network per VPC subnet: nothing is plugged on the local side
        provider_network_type="flat",
        provider_physical_network=want.ec2_subnet,
        description=f"azfed mirror of {want.ec2_subnet} in {want.vpc_id}",
    )
    conn.network.set_tags(network, want.network_tags(availability_zone))
    subnet = conn.network.create_subnet(network_id=network.id, name=name, **want.subnet_attrs())
    conn.network.set_tags(subnet, want.tags)
    return conn.network.get_subnet(subnet.id), True

"""A public cloud's subnet mirrored by a local Neutron network and subnet, so Neutron's IPAM
hands out the addresses burst VMs get in the public cloud.

- **A VPC subnet** (EC2): the Neutron subnet has its CIDR, its gateway is the VPC router (the
  CIDR's first host), and its allocation pool leaves out the five addresses AWS reserves in
  every subnet (the network address, the router, the DNS server, one for future use, and the
  broadcast address). The subnet carries the tag `azfed:ec2-subnet=<subnet id>`.
- **A public OpenStack's subnet**: the same CIDR, gateway and allocation pools as the public
  subnet, so every address the local IPAM hands out is one the public subnet can give. The
  subnet carries the tag `azfed:os-subnet=<public subnet id>`.

DHCP is off: the public cloud's own DHCP serves the instances. The ML2 driver and the Nova
driver read the tag; an operator who makes the network by hand adds the same tag (and
`azfed:az=<public AZ>` on the network, which the scheduler filter reads).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from azfed.errors import InputError, Problem

if TYPE_CHECKING:  # the mirror's Neutron calls are openstacksdk's
    from openstack.connection import Connection

SUBNET_TAG_PREFIX: Final = "azfed:ec2-subnet="
VPC_TAG_PREFIX: Final = "azfed:vpc="
# on a local subnet mirroring a public OpenStack's subnet: that subnet's id
OS_SUBNET_TAG_PREFIX: Final = "azfed:os-subnet="
# on the network: the public AZ its servers go to (the scheduler filter reads it)
AZ_TAG_PREFIX: Final = "azfed:az="
# AWS reserves the first four addresses and the last one of every subnet
_RESERVED_HEAD: Final = 4


def _tag_value(resource: Mapping[str, Any], prefix: str) -> str | None:
    for tag in resource.get("tags") or []:
        if str(tag).startswith(prefix):
            return str(tag)[len(prefix) :]
    return None


def ec2_subnet_of(subnet: Mapping[str, Any]) -> str | None:
    """The VPC subnet a Neutron subnet mirrors, from its tag."""
    return _tag_value(subnet, SUBNET_TAG_PREFIX)


def os_subnet_of(subnet: Mapping[str, Any]) -> str | None:
    """The public OpenStack subnet a Neutron subnet mirrors, from its tag."""
    return _tag_value(subnet, OS_SUBNET_TAG_PREFIX)


@dataclass(frozen=True)
class SubnetPlan:
    """The Neutron network and subnet that mirror one public subnet."""

    source: str  # the public subnet's id
    tags: tuple[str, ...]  # on the subnet; the first one names `source`
    description: str
    cidr: str
    gateway_ip: str | None
    pools: tuple[tuple[str, str], ...]

    @property
    def pool_start(self) -> str:
        return self.pools[0][0]

    @property
    def pool_end(self) -> str:
        return self.pools[-1][1]

    def network_tags(self, availability_zone: str) -> list[str]:
        return [*self.tags, AZ_TAG_PREFIX + availability_zone]

    def subnet_attrs(self) -> dict[str, Any]:
        return {
            "ip_version": 4,
            "cidr": self.cidr,
            "gateway_ip": self.gateway_ip,
            "enable_dhcp": False,
            "allocation_pools": [{"start": a, "end": b} for a, b in self.pools],
        }


def plan(ec2_subnet: Mapping[str, Any]) -> SubnetPlan:
    """The mirror of a DescribeSubnets item."""
    subnet_id = str(ec2_subnet.get("SubnetId"))
    net = _ipv4_network(subnet_id, "CidrBlock", ec2_subnet.get("CidrBlock"))
    if net.num_addresses < 16:  # AWS's smallest subnet is a /28
        raise InputError(
            subnet_id, [Problem("CidrBlock", str(net), "AWS subnets are /28 or larger")]
        )
    first = net.network_address
    vpc_id = str(ec2_subnet.get("VpcId"))
    return SubnetPlan(
        source=subnet_id,
        tags=(SUBNET_TAG_PREFIX + subnet_id, VPC_TAG_PREFIX + vpc_id),
        description=f"azfed mirror of {subnet_id} in {vpc_id}",
        cidr=str(net),
        gateway_ip=str(first + 1),
        pools=((str(first + _RESERVED_HEAD), str(net.broadcast_address - 1)),),
    )


def plan_public(os_subnet: Mapping[str, Any], cloud: str) -> SubnetPlan:
    """The mirror of a public OpenStack's subnet (its API's fields): the same CIDR, gateway
    and allocation pools."""
    subnet_id = str(os_subnet.get("id"))
    net = _ipv4_network(subnet_id, "cidr", os_subnet.get("cidr"))
    pools = _pools(subnet_id, os_subnet.get("allocation_pools") or [], net)
    gateway = os_subnet.get("gateway_ip")
    return SubnetPlan(
        source=subnet_id,
        tags=(OS_SUBNET_TAG_PREFIX + subnet_id,),
        description=f"azfed mirror of subnet {subnet_id} of the public cloud {cloud}",
        cidr=str(net),
        gateway_ip=str(gateway) if gateway else None,
        pools=pools,
    )


def _ipv4_network(subject: str, key: str, value: object) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(str(value))
    except ValueError as err:
        raise InputError(subject, [Problem(key, value, str(err))]) from err


def _pools(
    subject: str, pools: Sequence[Mapping[str, Any]], net: ipaddress.IPv4Network
) -> tuple[tuple[str, str], ...]:
    out = []
    for pool in pools:
        start, end = pool.get("start"), pool.get("end")
        try:
            inside = ipaddress.IPv4Address(start) in net and ipaddress.IPv4Address(end) in net
        except ValueError:
            inside = False
        if not inside:
            raise InputError(subject, [Problem("allocation_pools", pool, f"not within {net}")])
        out.append((str(start), str(end)))
    if not out:
        raise InputError(
            subject, [Problem("allocation_pools", [], "the subnet hands out no address")]
        )
    return tuple(out)


def find_mirror(conn: Connection, want: SubnetPlan) -> Any | None:
    """The Neutron subnet already mirroring this public subnet (openstacksdk), if any."""
    found = list(conn.network.subnets(tags=want.tags[0]))
    return found[0] if found else None


def az_of(network: Mapping[str, Any]) -> str | None:
    """The public AZ a mirrored network's servers go to, from its tag."""
    return _tag_value(network, AZ_TAG_PREFIX)


def mirror(
    conn: Connection,
    want: SubnetPlan,
    name: str,
    *,
    shared: bool,
    availability_zone: str,
) -> tuple[Any, bool]:
    """Make (or find) the Neutron subnet mirroring a public subnet (`plan` or `plan_public`);
    (subnet, created). The network is tagged with the public AZ whose proxy host launches
    there.

    Idempotent: a second run finds the tagged subnet and checks it still matches.
    """
    have = find_mirror(conn, want)
    if have is not None:
        if have.cidr != want.cidr:
            raise InputError(
                f"Neutron subnet {have.id}",
                [Problem("cidr", have.cidr, f"mirrors {want.source}, whose CIDR is {want.cidr}")],
            )
        return have, False
    network = conn.network.create_network(
        name=name,
        shared=shared,
        # one flat provider network per public subnet: nothing is plugged on the local side,
        # the ML2 driver binds its ports on the proxy hosts
        provider_network_type="flat",
        provider_physical_network=want.source,
        description=want.description,
    )
    conn.network.set_tags(network, want.network_tags(availability_zone))
    subnet = conn.network.create_subnet(network_id=network.id, name=name, **want.subnet_attrs())
    conn.network.set_tags(subnet, list(want.tags))
    return conn.network.get_subnet(subnet.id), True

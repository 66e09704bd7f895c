"""A burst VM's Neutron port, as the public cloud needs it at launch.

Nova creates the port (`openstack server create --network <mirrored network>`) and binds it
to the proxy host (azfed's ML2 driver, azfed.neutron.mech_driver); its fixed IP comes from
Neutron's IPAM. Here the driver turns the port into a `NetworkAttachment`: that address, the
VPC subnet the port's Neutron subnet mirrors (its `azfed:ec2-subnet=` tag), and the EC2
groups mirrored from the port's security groups, synced now so the instance starts with
exactly the rules Neutron has. A server with no port (`networks=none`) gets None and the
configured subnet and groups, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from azfed.clouds import NetworkAttachment
from azfed.errors import CloudError, PermanentError
from azfed.neutron.ec2_mirror import SecurityGroupMirror, call_ec2, ec2_client
from azfed.neutron.subnets import ec2_subnet_of


class PortNotUsable(PermanentError):
    """The server's port cannot be given to a burst instance: the message says what to change."""


def fixed_ipv4(vif: Any) -> tuple[str, str]:
    """(address, CIDR) of the port's first IPv4 fixed IP, from Nova's network_info."""
    for subnet in vif["network"]["subnets"]:
        for ip in subnet["ips"]:
            if ip.get("version") == 4 or "." in str(ip["address"]):
                return str(ip["address"]), str(subnet["cidr"])
    raise PortNotUsable(f"port {vif['id']} has no IPv4 address: EC2 instances need one")


def only_vif(network_info: Sequence[Any]) -> Any:
    if len(network_info) != 1:
        ids = [v["id"] for v in network_info]
        raise PortNotUsable(
            f"a burst instance takes exactly one port; this server has {len(ids)}: {ids}"
        )
    return network_info[0]


class PortResolver:
    """Reads a port from Neutron (Nova's own client) and its mirrors from EC2."""

    def __init__(self, region: str, endpoint_url: str | None) -> None:
        self._region, self._endpoint = region, endpoint_url
        self._client: Any = None

    def attachment(self, context: Any, network_info: Sequence[Any]) -> NetworkAttachment | None:
        if not network_info:
            return None
        vif = only_vif(network_info)
        address, _ = fixed_ipv4(vif)
        try:
            return self._resolve(context, vif["id"], address)
        except CloudError:  # EC2's answers, already in azfed's terms
            raise
        except Exception as err:  # Neutron's client: its own errors, auth plugins', requests'
            raise PortNotUsable(
                f"port {vif['id']}: Neutron could not be read ({type(err).__name__}: {err})"
            ) from err

    def _resolve(self, context: Any, port_id: str, address: str) -> NetworkAttachment:
        neutron = _neutron(context)
        port = neutron.show_port(port_id)["port"]
        subnet_id = next(ip["subnet_id"] for ip in port["fixed_ips"] if ip["ip_address"] == address)
        subnet = neutron.show_subnet(subnet_id)["subnet"]
        ec2_subnet = ec2_subnet_of(subnet)
        if ec2_subnet is None:
            raise PortNotUsable(
                f"Neutron subnet {subnet_id} ({subnet.get('cidr')}) mirrors no VPC subnet: boot "
                "burst servers on a network made by `azfed network mirror`, or tag the subnet "
                "azfed:ec2-subnet=<VPC subnet id>"
            )
        ec2 = self._ec2()
        vpc = call_ec2(ec2, "describe_subnets", ec2_subnet, SubnetIds=[ec2_subnet])
        mirror = SecurityGroupMirror(ec2, str(vpc["Subnets"][0]["VpcId"]))
        groups = tuple(
            mirror.sync(neutron.show_security_group(g)["security_group"])
            for g in port.get("security_groups") or []
        )
        return NetworkAttachment(port["id"], address, ec2_subnet, groups)

    def _ec2(self) -> Any:
        if self._client is None:
            self._client = ec2_client(self._region, self._endpoint)
        return self._client


def _neutron(context: Any) -> Any:
    from nova.network import neutron as nova_neutron

    # admin: the port's security groups may belong to the project, the subnet to the operator
    return nova_neutron.get_client(context, admin=True)

"""A burst VM's Neutron port, as the public cloud needs it at launch.

Nova creates the port (`openstack server create --network <mirrored network>`) and binds it
to the proxy host (azfed's ML2 driver, azfed.neutron.mech_driver); its fixed IP comes from
Neutron's IPAM. Here the driver turns the port into a `NetworkAttachment`: that address, the
public subnet the port's Neutron subnet mirrors (its `azfed:ec2-subnet=` tag for EC2, its
`azfed:os-subnet=` tag for a public OpenStack), and the public groups mirrored from the
port's security groups, synced now so the instance starts with exactly the rules Neutron
has. A server with no port (`networks=none`) gets None and the configured subnet and groups,
as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from azfed.clouds import NetworkAttachment
from azfed.errors import CloudError, PermanentError
from azfed.neutron import GroupMirror
from azfed.neutron.ec2_mirror import SecurityGroupMirror, call_ec2
from azfed.neutron.os_mirror import PublicGroupMirror
from azfed.neutron.subnets import ec2_subnet_of, os_subnet_of

log = structlog.get_logger(__name__)


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
    """Reads a port from Neutron (Nova's own client) and its mirrors from the public cloud.

    `provider` is the proxy host's ("ec2" or "openstack"); `connect` makes its client (a
    botocore EC2 client, or an openstacksdk Connection to the public cloud), once.
    """

    def __init__(self, provider: str, connect: Callable[[], Any]) -> None:
        self._provider, self._connect = provider, connect
        self._client: Any = None

    def attachment(self, context: Any, network_info: Sequence[Any]) -> NetworkAttachment | None:
        if not network_info:
            return None
        vif = only_vif(network_info)
        address, _ = fixed_ipv4(vif)
        try:
            return self._resolve(context, vif["id"], address)
        except CloudError:  # the public cloud's answers, already in azfed's terms
            raise
        except Exception as err:  # Neutron's client: its own errors, auth plugins', requests'
            raise PortNotUsable(
                f"port {vif['id']}: Neutron could not be read ({type(err).__name__}: {err})"
            ) from err

    def readdress(
        self, context: Any, instance: Any, attachment: NetworkAttachment, address: str
    ) -> None:
        """Move the local port to the address the public cloud gave its server (one that did
        not let azfed choose it), so Neutron and Nova show what the server has: Nova's cache
        of the instance's network is refreshed now, not at its next heal."""
        from nova.network import neutron as nova_neutron

        neutron = _neutron(context)
        port = neutron.show_port(attachment.port_id)["port"]
        subnet_id = next(
            ip["subnet_id"] for ip in port["fixed_ips"] if ip["ip_address"] == attachment.private_ip
        )
        neutron.update_port(
            attachment.port_id,
            {"port": {"fixed_ips": [{"subnet_id": subnet_id, "ip_address": address}]}},
        )
        nova_neutron.API().get_instance_nw_info(context, instance)
        log.warning(
            "ports.readdressed", port=attachment.port_id, was=attachment.private_ip, now=address
        )

    def _resolve(self, context: Any, port_id: str, address: str) -> NetworkAttachment:
        neutron = _neutron(context)
        port = neutron.show_port(port_id)["port"]
        subnet_id = next(ip["subnet_id"] for ip in port["fixed_ips"] if ip["ip_address"] == address)
        public_subnet, mirror = self._mirror_for(neutron.show_subnet(subnet_id)["subnet"])
        groups = tuple(
            mirror.sync(neutron.show_security_group(g)["security_group"])
            for g in port.get("security_groups") or []
        )
        return NetworkAttachment(port["id"], address, public_subnet, groups)

    def _mirror_for(self, subnet: Mapping[str, Any]) -> tuple[str, GroupMirror]:
        """The public subnet this Neutron subnet mirrors, and the group mirror of its cloud."""
        if self._provider == "openstack":
            public = os_subnet_of(subnet)
            if public is None:
                raise _not_mirrored(subnet, "`azfed network mirror --provider openstack`", "os")
            return public, PublicGroupMirror(self._cloud())
        ec2_subnet = ec2_subnet_of(subnet)
        if ec2_subnet is None:
            raise _not_mirrored(subnet, "`azfed network mirror`", "ec2")
        ec2 = self._cloud()
        vpc = call_ec2(ec2, "describe_subnets", ec2_subnet, SubnetIds=[ec2_subnet])
        return ec2_subnet, SecurityGroupMirror(ec2, str(vpc["Subnets"][0]["VpcId"]))

    def _cloud(self) -> Any:
        if self._client is None:
            self._client = self._connect()
        return self._client


def _not_mirrored(subnet: Mapping[str, Any], command: str, kind: str) -> PortNotUsable:
    what = "VPC subnet" if kind == "ec2" else "subnet of the public OpenStack"
    return PortNotUsable(
        f"Neutron subnet {subnet.get('id')} ({subnet.get('cidr')}) mirrors no {what} this "
        f"proxy host launches in: boot burst servers on a network made by {command}, or tag "
        f"the subnet azfed:{kind}-subnet=<public subnet id>"
    )


def _neutron(context: Any) -> Any:
    from nova.network import neutron as nova_neutron

    # admin: the port's security groups may belong to the project, the subnet to the operator
    return nova_neutron.get_client(context, admin=True)

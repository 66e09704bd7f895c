"""Neutron security-group rules as EC2 security-group permissions, both ways.

Pure: no boto, no Neutron import. A rule on either side becomes a set of `Permission`s, one
per (direction, protocol, ports, peer), so the two sides compare as sets and the mirror
authorizes what is missing and revokes what is extra.

Semantics kept (Neutron -> EC2):
- a rule with no remote means any address of its ethertype (`0.0.0.0/0` or `::/0`);
- a rule with `remote_group_id` means "the instances in that group": an EC2 group reference
  to the group mirrored from it (whose members are the burst VMs with that Neutron group);
- no protocol means every protocol (`-1`); TCP/UDP without ports means every port;
- ICMP's `port_range_min`/`max` are its type and code; IPv6's ICMP is EC2's `icmpv6`;
- the default group's rules (ingress from its own members, egress anywhere) need nothing
  special: they are rules like any other.

Neutron's address groups (`remote_address_group_id`) have no EC2 counterpart the mirror keeps;
such a rule is refused with `UnmirrorableRule`, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from azfed.errors import InputError, Problem

Direction = Literal["ingress", "egress"]
ANY_V4: Final = "0.0.0.0/0"
ANY_V6: Final = "::/0"
# Neutron accepts names and IANA numbers; EC2 wants these names for the four it knows by name
_PROTOCOL_NAMES: Final = {
    "6": "tcp",
    "17": "udp",
    "1": "icmp",
    "58": "icmpv6",
    "ipv6-icmp": "icmpv6",
    "icmpv6": "icmpv6",
    "tcp": "tcp",
    "udp": "udp",
    "icmp": "icmp",
}
_PORTED: Final = frozenset({"tcp", "udp"})
_ICMP: Final = frozenset({"icmp", "icmpv6"})


class UnmirrorableRule(InputError):
    """A Neutron rule EC2 cannot express: the group is not mirrored until it is changed."""


@dataclass(frozen=True, order=True)
class Permission:
    """One EC2 permission entry: a direction, a protocol with its port range, one peer.

    `peer_kind` is "cidr4", "cidr6" or "group" (an EC2 group id in `peer`). Ports are EC2's:
    -1 where EC2 means "all" (every protocol, every ICMP type or code).
    """

    direction: Direction
    protocol: str
    from_port: int
    to_port: int
    peer_kind: Literal["cidr4", "cidr6", "group"]
    peer: str

    def ip_permission(self) -> dict[str, Any]:
        """This entry as EC2's `IpPermissions` item (authorize and revoke take the same)."""
        perm: dict[str, Any] = {"IpProtocol": self.protocol}
        if self.protocol != "-1":
            perm["FromPort"], perm["ToPort"] = self.from_port, self.to_port
        if self.peer_kind == "cidr4":
            perm["IpRanges"] = [{"CidrIp": self.peer}]
        elif self.peer_kind == "cidr6":
            perm["Ipv6Ranges"] = [{"CidrIpv6": self.peer}]
        else:
            perm["UserIdGroupPairs"] = [{"GroupId": self.peer}]
        return perm


def ec2_protocol(rule: Mapping[str, Any]) -> str:
    """EC2's IpProtocol for a Neutron rule's `protocol` and `ethertype`."""
    raw = rule.get("protocol")
    if raw in (None, "", "any", "0"):
        return "-1"
    name = _PROTOCOL_NAMES.get(str(raw).lower(), str(raw))
    if name == "icmp" and rule.get("ethertype") == "IPv6":
        return "icmpv6"  # Neutron lets an IPv6 rule say "icmp"; it means ICMPv6
    return name


def _ports(protocol: str, rule: Mapping[str, Any]) -> tuple[int, int]:
    lo, hi = rule.get("port_range_min"), rule.get("port_range_max")
    if protocol in _PORTED:
        return (0, 65535) if lo is None else (int(lo), int(hi if hi is not None else lo))
    if protocol in _ICMP:
        # Neutron: min is the ICMP type, max the code; EC2: FromPort type, ToPort code
        return (-1 if lo is None else int(lo), -1 if hi is None else int(hi))
    return (-1, -1)


def permissions_of_rule(rule: Mapping[str, Any], group_of: Callable[[str], str]) -> Permission:
    """The EC2 permission of one Neutron rule; `group_of` maps a Neutron group id to the EC2
    group mirrored from it (the mirror creates it if it must)."""
    if rule.get("remote_address_group_id"):
        raise UnmirrorableRule(
            f"security group {rule.get('security_group_id')}",
            [
                Problem(
                    f"rule {rule.get('id')}",
                    rule["remote_address_group_id"],
                    "address groups are not mirrored to EC2: use remote_ip_prefix rules",
                )
            ],
        )
    protocol = ec2_protocol(rule)
    lo, hi = _ports(protocol, rule)
    direction: Direction = "egress" if rule.get("direction") == "egress" else "ingress"
    if rule.get("remote_group_id"):
        return Permission(direction, protocol, lo, hi, "group", group_of(rule["remote_group_id"]))
    v6 = rule.get("ethertype") == "IPv6"
    prefix = rule.get("remote_ip_prefix") or (ANY_V6 if v6 else ANY_V4)
    return Permission(direction, protocol, lo, hi, "cidr6" if ":" in prefix else "cidr4", prefix)


def desired(rules: Iterable[Mapping[str, Any]], group_of: Callable[[str], str]) -> set[Permission]:
    """Every EC2 permission a Neutron group's rules call for."""
    return {permissions_of_rule(r, group_of) for r in rules}


def actual(group: Mapping[str, Any]) -> set[Permission]:
    """Every permission an EC2 group (DescribeSecurityGroups' item) holds, one per peer."""
    found: set[Permission] = set()
    sides: tuple[tuple[str, Direction], ...] = (
        ("IpPermissions", "ingress"),
        ("IpPermissionsEgress", "egress"),
    )
    for key, direction in sides:
        for perm in group.get(key) or []:
            proto = str(perm.get("IpProtocol", "-1"))
            lo = int(perm.get("FromPort", -1)) if proto != "-1" else -1
            hi = int(perm.get("ToPort", -1)) if proto != "-1" else -1
            for r in perm.get("IpRanges") or []:
                found.add(Permission(direction, proto, lo, hi, "cidr4", r["CidrIp"]))
            for r in perm.get("Ipv6Ranges") or []:
                found.add(Permission(direction, proto, lo, hi, "cidr6", r["CidrIpv6"]))
            for r in perm.get("UserIdGroupPairs") or []:
                found.add(Permission(direction, proto, lo, hi, "group", r["GroupId"]))
    return found

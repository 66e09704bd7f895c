"""Neutron security-group rules translate to exactly the EC2 permissions they mean."""

from __future__ import annotations

from typing import Any

import pytest
from azfed.neutron.rules import Permission, UnmirrorableRule, actual, desired, permissions_of_rule


def _rule(**kw: Any) -> dict[str, Any]:
    base = {"id": "r1", "security_group_id": "sg-n", "direction": "ingress", "ethertype": "IPv4"}
    return {**base, **kw}


def _groups(neutron_id: str) -> str:
    return f"sg-ec2-{neutron_id}"


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        # no protocol: every protocol, no ports; no remote: any IPv4 address
        (_rule(), Permission("ingress", "-1", -1, -1, "cidr4", "0.0.0.0/0")),
        (
            _rule(ethertype="IPv6", direction="egress"),
            Permission("egress", "-1", -1, -1, "cidr6", "::/0"),
        ),
        # TCP without ports is every port
        (_rule(protocol="tcp"), Permission("ingress", "tcp", 0, 65535, "cidr4", "0.0.0.0/0")),
        (
            _rule(
                protocol="tcp", port_range_min=22, port_range_max=22, remote_ip_prefix="10.0.0.0/8"
            ),
            Permission("ingress", "tcp", 22, 22, "cidr4", "10.0.0.0/8"),
        ),
        # protocols given by number take EC2's names
        (
            _rule(protocol="17", port_range_min=53, port_range_max=53),
            Permission("ingress", "udp", 53, 53, "cidr4", "0.0.0.0/0"),
        ),
        # ICMP: min is the type, max the code; absent means all
        (
            _rule(protocol="icmp", port_range_min=8),
            Permission("ingress", "icmp", 8, -1, "cidr4", "0.0.0.0/0"),
        ),
        (
            _rule(protocol="icmp", port_range_min=8, port_range_max=0),
            Permission("ingress", "icmp", 8, 0, "cidr4", "0.0.0.0/0"),
        ),
        # IPv6's ICMP, whichever way Neutron spells it
        (
            _rule(protocol="ipv6-icmp", ethertype="IPv6"),
            Permission("ingress", "icmpv6", -1, -1, "cidr6", "::/0"),
        ),
        (
            _rule(protocol="icmp", ethertype="IPv6"),
            Permission("ingress", "icmpv6", -1, -1, "cidr6", "::/0"),
        ),
        # another protocol by number keeps its number
        (_rule(protocol="47"), Permission("ingress", "47", -1, -1, "cidr4", "0.0.0.0/0")),
        # a remote group is a reference to the group mirrored from it
        (
            _rule(remote_group_id="sg-n"),
            Permission("ingress", "-1", -1, -1, "group", "sg-ec2-sg-n"),
        ),
    ],
)
def test_one_rule(rule: dict[str, Any], expected: Permission) -> None:
    """Each kind of Neutron rule becomes the one EC2 permission with its meaning."""
    assert permissions_of_rule(rule, _groups) == expected


def test_address_groups_are_refused_by_name() -> None:
    """An address-group rule has no EC2 counterpart here: refused naming the rule, not dropped."""
    with pytest.raises(UnmirrorableRule, match="rule r1") as err:
        permissions_of_rule(_rule(remote_address_group_id="ag-1"), _groups)
    assert "ag-1" in str(err.value)


def test_default_group_semantics() -> None:
    """Neutron's default group (members talk to each other, egress anywhere) becomes a
    self-referencing EC2 group with both egress ranges."""
    rules = [
        _rule(id="a", remote_group_id="sg-n"),
        _rule(id="b", ethertype="IPv6", remote_group_id="sg-n"),
        _rule(id="c", direction="egress"),
        _rule(id="d", direction="egress", ethertype="IPv6"),
    ]
    assert desired(rules, _groups) == {
        Permission("ingress", "-1", -1, -1, "group", "sg-ec2-sg-n"),
        Permission("egress", "-1", -1, -1, "cidr4", "0.0.0.0/0"),
        Permission("egress", "-1", -1, -1, "cidr6", "::/0"),
    }


def test_ec2_permissions_round_trip() -> None:
    """What authorize sends, describe gives back as the same set (so a synced group diffs
    empty), one Permission per peer of a multi-peer EC2 entry."""
    perms = {
        Permission("ingress", "tcp", 22, 22, "cidr4", "10.0.0.0/8"),
        Permission("ingress", "tcp", 22, 22, "cidr6", "fd00::/8"),
        Permission("egress", "-1", -1, -1, "group", "sg-1"),
        Permission("ingress", "icmp", 8, -1, "cidr4", "0.0.0.0/0"),
    }
    described = {
        "IpPermissions": [p.ip_permission() for p in perms if p.direction == "ingress"],
        "IpPermissionsEgress": [p.ip_permission() for p in perms if p.direction == "egress"],
    }
    assert actual(described) == perms
    merged = {
        "IpPermissions": [
            {
                "IpProtocol": "tcp",
                "FromPort": 80,
                "ToPort": 80,
                "IpRanges": [{"CidrIp": "1.0.0.0/8"}, {"CidrIp": "2.0.0.0/8"}],
                "UserIdGroupPairs": [{"GroupId": "sg-2"}],
            }
        ]
    }
    assert len(actual(merged)) == 3

"""Neutron rules carried to a public OpenStack's Neutron: equal keys mean the same rule."""

from __future__ import annotations

from typing import Any

import pytest
from azfed.neutron.os_mirror import public_rule, rule_key
from azfed.neutron.rules import UnmirrorableRule


def _rule(**kw: Any) -> dict[str, Any]:
    return {"id": "r1", "direction": "ingress", "ethertype": "IPv4", **kw}


def _public(local_id: str) -> str:
    return f"pub-{local_id}"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        # a protocol by name or by number is one protocol
        (
            _rule(protocol="tcp", port_range_min=22, port_range_max=22),
            _rule(protocol="6", port_range_min=22, port_range_max=22),
        ),
        (_rule(protocol="ipv6-icmp", ethertype="IPv6"), _rule(protocol="58", ethertype="IPv6")),
        # no remote is any address of the ethertype, however written
        (_rule(), _rule(remote_ip_prefix="0.0.0.0/0")),
        (_rule(ethertype="IPv6"), _rule(ethertype="IPv6", remote_ip_prefix="::/0")),
    ],
)
def test_two_spellings_of_one_rule_are_one_key(one: dict[str, Any], other: dict[str, Any]) -> None:
    assert rule_key(one, _public) == rule_key(other, _public)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (_rule(protocol="tcp"), _rule(protocol="udp")),
        (_rule(), _rule(direction="egress")),
        (_rule(remote_ip_prefix="10.0.0.0/8"), _rule(remote_ip_prefix="10.0.0.0/16")),
        (
            _rule(protocol="tcp", port_range_min=22, port_range_max=22),
            _rule(protocol="tcp", port_range_min=22, port_range_max=23),
        ),
        (_rule(remote_group_id="g1"), _rule(remote_group_id="g2")),
        (_rule(remote_group_id="g1"), _rule()),
    ],
)
def test_different_rules_are_different_keys(one: dict[str, Any], other: dict[str, Any]) -> None:
    assert rule_key(one, _public) != rule_key(other, _public)


def test_a_remote_group_becomes_its_public_copy() -> None:
    """ "The members of group g1" is, in the public cloud, the members of g1's copy; the rule
    made there names the copy and no address."""
    key = rule_key(
        _rule(protocol="tcp", remote_group_id="g1", port_range_min=80, port_range_max=80), _public
    )
    assert public_rule(key) == {
        "direction": "ingress",
        "ethertype": "IPv4",
        "protocol": "6",
        "port_range_min": 80,
        "port_range_max": 80,
        "remote_group_id": "pub-g1",
    }


def test_a_public_rule_read_back_has_the_key_it_was_made_from() -> None:
    """What the public cloud lists for a created rule (its own ids) compares equal to the key
    it was created from: a second sync changes nothing."""
    key = rule_key(_rule(ethertype="IPv6", direction="egress"), _public)
    listed = {"id": "x", **public_rule(key), "remote_group_id": None}
    assert rule_key(listed, str) == key


def test_an_address_group_rule_is_refused_by_name() -> None:
    with pytest.raises(UnmirrorableRule, match="remote_address_group_id"):
        rule_key(_rule(remote_address_group_id="ag1"), _public)


def test_the_public_rule_keeps_the_local_spelling_of_its_protocol() -> None:
    """Compared by number, made with the local word: both clouds list `tcp`."""
    key = rule_key(_rule(protocol="tcp", port_range_min=22, port_range_max=22), _public)
    assert public_rule(key, "tcp")["protocol"] == "tcp"
    assert rule_key({**public_rule(key, "tcp"), "remote_group_id": None}, str) == key

"""Security groups copied into a public OpenStack, against the bed's real Neutron: the
"local" groups in the admin project, their copies in the bed's public project."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import openstack
import pytest
from azfed.neutron.os_mirror import TAG_PREFIX, PublicGroupMirror

from testbed.openstack import AUTH, PUBLIC_AUTH, OpenStackBed


@pytest.fixture(scope="module")
def clouds(openstack_bed: OpenStackBed) -> Iterator[tuple[Any, Any]]:
    local = openstack.connect(**AUTH)
    public = openstack.connect(**PUBLIC_AUTH)
    yield local, public
    local.close()
    public.close()


@pytest.fixture
def group(clouds: tuple[Any, Any]) -> Iterator[Any]:
    """A local group: Neutron gives it its two egress rules; one ingress rule from its own
    members (the default group's kind), one from a CIDR by protocol number."""
    local, public = clouds
    made = local.network.create_security_group(name=f"t-{uuid.uuid4().hex[:6]}")
    local.network.create_security_group_rule(
        security_group_id=made.id, direction="ingress", ethertype="IPv4", remote_group_id=made.id
    )
    local.network.create_security_group_rule(
        security_group_id=made.id,
        direction="ingress",
        ethertype="IPv4",
        protocol="6",
        port_range_min=80,
        port_range_max=80,
        remote_ip_prefix="192.0.2.0/24",
    )
    yield local.network.get_security_group(made.id)
    for copy in public.network.security_groups(tags=TAG_PREFIX + made.id):
        public.network.delete_security_group(copy, ignore_missing=True)
    local.network.delete_security_group(made, ignore_missing=True)


def _rules(conn: Any, group_id: str, own: str, copy: str) -> set[tuple[Any, ...]]:
    """A group's rules with its own id written `self`, so the two sides compare."""
    return {
        (
            r.direction,
            r.ether_type,
            r.protocol,
            r.port_range_min,
            r.remote_ip_prefix,
            "self" if r.remote_group_id in (own, copy) else r.remote_group_id,
        )
        for r in conn.network.security_group_rules(security_group_id=group_id)
    }


def test_a_copy_has_the_local_rules_and_a_second_sync_changes_nothing(
    clouds: tuple[Any, Any], group: Any
) -> None:
    """The copy is in the public project, tagged with the local id; its rules are the local
    group's (the self-reference names the copy itself), and a second sync makes no call that
    writes: same rule ids."""
    local, public = clouds
    mirror = PublicGroupMirror(public)
    copy_id = mirror.sync(group.to_dict(original_names=True))
    copy = public.network.get_security_group(copy_id)
    assert copy.name == f"azfed-{group.id}"
    assert TAG_PREFIX + group.id in copy.tags
    assert copy.project_id == public.current_project_id
    assert _rules(public, copy_id, group.id, copy_id) == _rules(local, group.id, group.id, copy_id)
    before = {r.id for r in public.network.security_group_rules(security_group_id=copy_id)}
    assert mirror.sync(group.to_dict(original_names=True)) == copy_id
    assert {r.id for r in public.network.security_group_rules(security_group_id=copy_id)} == before


def test_rules_removed_locally_go_from_the_copy(clouds: tuple[Any, Any], group: Any) -> None:
    """A local group without egress rules: the two the public cloud gave the copy are deleted
    too; a deleted local rule is deleted from the copy."""
    local, public = clouds
    mirror = PublicGroupMirror(public)
    for rule in local.network.security_group_rules(security_group_id=group.id):
        if rule.direction == "egress" or rule.protocol is not None:
            local.network.delete_security_group_rule(rule)
    copy_id = mirror.sync(local.network.get_security_group(group.id).to_dict(original_names=True))
    assert _rules(public, copy_id, group.id, copy_id) == {
        ("ingress", "IPv4", None, None, None, "self")
    }


def test_delete_removes_the_copy_and_says_so(clouds: tuple[Any, Any], group: Any) -> None:
    _, public = clouds
    mirror = PublicGroupMirror(public)
    mirror.sync(group.to_dict(original_names=True))
    assert mirror.delete(group.id) is True
    assert mirror.find(group.id) is None
    assert mirror.delete(group.id) is True  # nothing left to delete is fine

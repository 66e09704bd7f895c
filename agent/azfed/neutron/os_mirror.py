"""Neutron security groups mirrored into a public OpenStack cloud's Neutron, one managed group
per local group.

The public group is named `azfed-<local group id>` and tagged
`azfed:neutron-security-group=<local group id>` (it is found by the tag: Neutron does not keep
group names unique). Both sides are Neutron, so a rule carries over as it is, with one
translation: a rule whose remote is a local group ("the instances in that group") names that
group's public mirror instead, whose members are the burst servers with the local group. The
rules are compared as `RuleKey`s: what is missing is created, what is extra is deleted,
including the two egress rules the public cloud gives every new group, unless the local
group has them too.

An address-group rule is refused by name (`UnmirrorableRule`), as for EC2: the public cloud
has no copy of the local address group.

Synchronous openstacksdk, for the same callers as the EC2 mirror: neutron-server's ML2 driver
(on Neutron's callbacks) and the Nova driver (before a launch). Nothing is cached: both write
the same groups, so each call reads the public cloud's current state first.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import structlog
from azfed.errors import CloudError, Problem
from azfed.neutron.ec2_mirror import GROUP_TAG, NAME_PREFIX
from azfed.neutron.rules import UnmirrorableRule

log = structlog.get_logger(__name__)

TAG_PREFIX: Final = GROUP_TAG + "="
# Neutron takes a protocol by name or by IANA number; two spellings of one protocol are one rule
_PROTOCOL_NUMBERS: Final = {"tcp": "6", "udp": "17", "icmp": "1", "ipv6-icmp": "58", "icmpv6": "58"}
_ANY: Final = {"IPv4": "0.0.0.0/0", "IPv6": "::/0"}
# the fields a rule is made of, as Neutron's API names them
_FIELDS: Final = (
    "direction",
    "ethertype",
    "protocol",
    "port_range_min",
    "port_range_max",
    "remote_ip_prefix",
    "remote_group_id",
)

RuleKey = tuple[str, str, str | None, int | None, int | None, str | None, str | None]


def rule_key(rule: Mapping[str, Any], group_of: Callable[[str], str]) -> RuleKey:
    """What a rule means, in the public cloud's ids: equal keys are the same rule.

    A rule with neither a remote address nor a remote group means any address of its
    ethertype, however it was written.
    """
    if rule.get("remote_address_group_id"):
        raise UnmirrorableRule(
            f"security group rule {rule.get('id')}",
            [
                Problem(
                    "remote_address_group_id",
                    rule["remote_address_group_id"],
                    "address groups are not mirrored to a public OpenStack: use a CIDR or a "
                    "remote group",
                )
            ],
        )
    ethertype = str(rule.get("ethertype") or "IPv4")
    protocol = rule.get("protocol")
    protocol = _PROTOCOL_NUMBERS.get(str(protocol).lower(), str(protocol)) if protocol else None
    remote_group = rule.get("remote_group_id")
    prefix = rule.get("remote_ip_prefix")
    if remote_group is None:
        prefix = str(prefix) if prefix else _ANY[ethertype]
    return (
        str(rule["direction"]),
        ethertype,
        protocol,
        rule.get("port_range_min"),
        rule.get("port_range_max"),
        prefix,
        group_of(str(remote_group)) if remote_group else None,
    )


def public_rule(key: RuleKey, protocol: str | None = None) -> dict[str, Any]:
    """The create_security_group_rule arguments for a key (the public group id is added),
    with the protocol spelled as the local rule spells it (`protocol`), so both clouds list
    the same word."""
    fields = dict(zip(_FIELDS, key, strict=True))
    if protocol is not None:
        fields["protocol"] = protocol
    return {k: v for k, v in fields.items() if v is not None}


@dataclass
class PublicGroupMirror:
    """The managed groups in one public OpenStack project; `conn` is an openstacksdk
    Connection to it."""

    conn: Any

    # --- reads -------------------------------------------------------------------------------

    def find(self, local_id: str) -> str | None:
        """The public group mirrored from this local group, if there is one (the oldest, if
        two writers raced to create it)."""
        found = self._call(
            "list_security_groups",
            local_id,
            lambda: list(self.conn.network.security_groups(tags=TAG_PREFIX + local_id)),
        )
        if not found:
            return None
        return str(min(found, key=lambda g: (str(g.created_at), g.id)).id)

    # --- writes ------------------------------------------------------------------------------

    def ensure(self, local_id: str, name: str = "") -> str:
        """The public group for this local group, created if missing."""
        found = self.find(local_id)
        if found is not None:
            return found

        def create() -> Any:
            group = self.conn.network.create_security_group(
                name=NAME_PREFIX + local_id,
                description=f"azfed mirror of security group {local_id} ({name or 'no name'})",
            )
            self.conn.network.set_tags(group, [TAG_PREFIX + local_id])
            return group

        group = self._call("create_security_group", local_id, create)
        log.info("sg_mirror.created", neutron_group=local_id, public_group=group.id)
        return str(group.id)

    def sync(self, group: Mapping[str, Any]) -> str:
        """Make the public group's rules equal to the local group's (a Neutron
        `security_group` dict with its `security_group_rules`); return the public group id."""
        local_id = str(group["id"])
        public_id = self.ensure(local_id, str(group.get("name") or ""))
        # the default group's rules name the group itself: its mirror is the one being synced
        refs = {local_id: public_id}

        def group_of(ref: str) -> str:
            if ref not in refs:
                # a rule naming another group means "its members": an empty mirror is exact
                # until a burst server joins it, and that server's port syncs its own rules
                refs[ref] = self.ensure(ref)
            return refs[ref]

        want = {rule_key(r, group_of): r for r in group.get("security_group_rules") or []}
        have = {
            rule_key(r.to_dict(original_names=True), str): r.id
            for r in self._call(
                "list_security_group_rules",
                public_id,
                lambda: list(self.conn.network.security_group_rules(security_group_id=public_id)),
            )
        }
        for key, rule_id in have.items():
            if key not in want:
                delete = functools.partial(
                    self.conn.network.delete_security_group_rule, rule_id, ignore_missing=True
                )
                self._call("delete_security_group_rule", public_id, delete)
        for key in sorted(want.keys() - have.keys(), key=repr):
            create = functools.partial(
                self.conn.network.create_security_group_rule,
                security_group_id=public_id,
                **public_rule(key, want[key].get("protocol")),
            )
            self._call("create_security_group_rule", public_id, create)
        if want.keys() != have.keys():
            log.info(
                "sg_mirror.synced",
                neutron_group=local_id,
                public_group=public_id,
                created=len(want.keys() - have.keys()),
                deleted=len(have.keys() - want.keys()),
            )
        return public_id

    def delete(self, neutron_id: str) -> bool:
        """Delete the mirrored group; False if the public cloud still needs it (a port or a
        rule of another group uses it: the next call after that goes away deletes it)."""
        public_id = self.find(neutron_id)
        if public_id is None:
            return True
        try:
            self._call(
                "delete_security_group",
                public_id,
                lambda: self.conn.network.delete_security_group(public_id, ignore_missing=True),
            )
        except CloudError as err:
            if err.code != "409":
                raise
            log.info("sg_mirror.delete_deferred", neutron_group=neutron_id, public_group=public_id)
            return False
        log.info("sg_mirror.deleted", neutron_group=neutron_id, public_group=public_id)
        return True

    def set_instance_groups(self, instance_uuid: str, neutron_ids: Iterable[str]) -> str | None:
        """Give the public port of this Nova UUID's server exactly these (mirrored) groups;
        the port id, or None when the server has none yet (it gets them at launch)."""
        from azfed.clouds.openstack import remote_name

        name = remote_name(instance_uuid)
        ports = self._call("list_ports", name, lambda: list(self.conn.network.ports(name=name)))
        if not ports:
            return None
        groups = [self.ensure(g) for g in neutron_ids]
        port_id = str(ports[0].id)
        self._call(
            "update_port",
            port_id,
            lambda: self.conn.network.update_port(port_id, security_groups=groups),
        )
        log.info(
            "sg_mirror.instance_groups", instance_uuid=instance_uuid, port=port_id, groups=groups
        )
        return port_id

    # --- plumbing ----------------------------------------------------------------------------

    def _call(self, action: str, subject: str, fn: Callable[[], Any]) -> Any:
        return call_public(action, subject, fn)


def call_public(action: str, subject: str, fn: Callable[[], Any]) -> Any:
    """One synchronous openstacksdk call, its errors in azfed's hierarchy (as the async
    backend's), the HTTP status as the error's code."""
    from azfed.clouds.openstack import map_error
    from keystoneauth1 import exceptions as ks_exc
    from openstack import exceptions as os_exc

    try:
        return fn()
    except (os_exc.SDKException, ks_exc.ClientException) as err:
        raise map_error(err, action, subject) from err

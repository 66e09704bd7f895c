"""Neutron security groups mirrored as EC2 security groups, one managed EC2 group per
Neutron group and VPC.

The EC2 group is named `azfed-<neutron group id>` (EC2 keeps group names unique per VPC, so
two writers racing to create it end with one group) and tagged with the Neutron id. Its
permissions are made equal to the Neutron group's rules (`azfed.neutron.rules`): what is
missing is authorized, what is extra is revoked, EC2's default egress rule included. Both the
ML2 mechanism driver (on Neutron's callbacks) and the Nova driver (before a launch) call it;
every call is idempotent.

Synchronous botocore: neutron-server and nova-compute call it from their own worker threads,
with the timeouts and retries every azfed AWS client has (`azfed.aws`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import structlog
from azfed.aws import AWS_CLIENT_DEFAULTS
from azfed.clouds import UUID_TAG
from azfed.errors import NotFoundError, PermanentError
from azfed.neutron.rules import Permission, actual, desired

log = structlog.get_logger(__name__)

GROUP_TAG: Final = "azfed:neutron-security-group"
NAME_PREFIX: Final = "azfed-"
# a managed group EC2 cannot delete yet: an instance (still shutting down) or another group's
# rule still refers to it
_IN_USE: Final = "DependencyViolation"


def ec2_client(region: str | None = None, endpoint_url: str | None = None) -> Any:
    """A botocore EC2 client with azfed's timeouts and retries (credentials: boto's chain)."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "ec2",
        region_name=region,
        endpoint_url=endpoint_url,
        config=Config(**AWS_CLIENT_DEFAULTS.botocore_kwargs()),
    )


@dataclass
class SecurityGroupMirror:
    """The managed EC2 groups of one VPC. `client` is a botocore EC2 client.

    Nothing is cached: neutron-server's workers and nova-compute write the same groups, so
    each call reads EC2's current state first.
    """

    client: Any
    vpc_id: str

    # --- reads -------------------------------------------------------------------------------

    def find(self, neutron_id: str) -> str | None:
        """The EC2 group mirrored from this Neutron group, if there is one."""
        out = self._call(
            "describe_security_groups",
            neutron_id,
            Filters=[
                {"Name": "vpc-id", "Values": [self.vpc_id]},
                {"Name": "group-name", "Values": [NAME_PREFIX + neutron_id]},
            ],
        )
        groups = out.get("SecurityGroups") or []
        return str(groups[0]["GroupId"]) if groups else None

    # --- writes ------------------------------------------------------------------------------

    def ensure(self, neutron_id: str, name: str = "") -> str:
        """The EC2 group for this Neutron group, created empty if missing."""
        found = self.find(neutron_id)
        if found is not None:
            return found
        tags = [
            {"Key": GROUP_TAG, "Value": neutron_id},
            {"Key": "Name", "Value": name or neutron_id},
        ]
        try:
            out = self._call(
                "create_security_group",
                neutron_id,
                GroupName=NAME_PREFIX + neutron_id,
                Description=f"azfed mirror of Neutron security group {neutron_id}",
                VpcId=self.vpc_id,
                TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}],
            )
        except PermanentError as err:
            if err.code != "InvalidGroup.Duplicate":
                raise
            # another writer created it between our read and our create
            again = self.find(neutron_id)
            assert again is not None, "EC2 said the group exists and then did not list it"
            return again
        group_id = str(out["GroupId"])
        # a new VPC group allows all IPv4 egress; sync() makes egress what Neutron says
        log.info("sg_mirror.created", neutron_group=neutron_id, ec2_group=group_id)
        return group_id

    def sync(self, group: Mapping[str, Any]) -> str:
        """Make the EC2 group's permissions equal to the Neutron group's rules (a Neutron
        `security_group` dict with its `security_group_rules`); return the EC2 group id."""
        group_id = self.ensure(str(group["id"]), str(group.get("name") or ""))
        want = desired(group.get("security_group_rules") or [], self._referenced)
        have = actual(self._describe(group_id))
        self._revoke(group_id, have - want)
        self._authorize(group_id, want - have)
        if have != want:
            log.info(
                "sg_mirror.synced",
                neutron_group=group["id"],
                ec2_group=group_id,
                authorized=len(want - have),
                revoked=len(have - want),
            )
        return group_id

    def delete(self, neutron_id: str) -> bool:
        """Delete the mirrored group; False if EC2 still needs it (an instance or a rule uses
        it: the next call after that goes away deletes it)."""
        group_id = self.find(neutron_id)
        if group_id is None:
            return True
        try:
            self._call("delete_security_group", group_id, GroupId=group_id)
        except NotFoundError:
            pass
        except PermanentError as err:
            if err.code != _IN_USE:
                raise
            log.info("sg_mirror.delete_deferred", neutron_group=neutron_id, ec2_group=group_id)
            return False
        log.info("sg_mirror.deleted", neutron_group=neutron_id, ec2_group=group_id)
        return True

    def set_instance_groups(self, instance_uuid: str, neutron_ids: Iterable[str]) -> str | None:
        """Give the live EC2 instance of this Nova UUID exactly these (mirrored) groups;
        the instance id, or None when it has none yet (it gets them at launch)."""
        out = self._call(
            "describe_instances",
            instance_uuid,
            Filters=[
                {"Name": f"tag:{UUID_TAG}", "Values": [instance_uuid]},
                {
                    "Name": "instance-state-name",
                    "Values": ["pending", "running", "stopping", "stopped"],
                },
            ],
        )
        found = [i for r in out.get("Reservations") or [] for i in r.get("Instances") or []]
        if not found:
            return None
        instance_id = str(found[0]["InstanceId"])
        groups = [self.ensure(n) for n in neutron_ids]
        self._call("modify_instance_attribute", instance_id, InstanceId=instance_id, Groups=groups)
        log.info(
            "sg_mirror.instance_groups", instance_uuid=instance_uuid, id=instance_id, groups=groups
        )
        return instance_id

    # --- plumbing ----------------------------------------------------------------------------

    def _referenced(self, neutron_id: str) -> str:
        # a rule naming another group means "its members": an empty mirror is exact until a
        # burst VM joins it, and that VM's port syncs the group's own rules
        return self.ensure(neutron_id)

    def _describe(self, group_id: str) -> dict[str, Any]:
        out = self._call("describe_security_groups", group_id, GroupIds=[group_id])
        return dict(out["SecurityGroups"][0])

    def _authorize(self, group_id: str, perms: set[Permission]) -> None:
        for direction, call in (
            ("ingress", "authorize_security_group_ingress"),
            ("egress", "authorize_security_group_egress"),
        ):
            batch = [p.ip_permission() for p in sorted(perms) if p.direction == direction]
            if batch:
                self._call(call, group_id, GroupId=group_id, IpPermissions=batch)

    def _revoke(self, group_id: str, perms: set[Permission]) -> None:
        for direction, call in (
            ("ingress", "revoke_security_group_ingress"),
            ("egress", "revoke_security_group_egress"),
        ):
            batch = [p.ip_permission() for p in sorted(perms) if p.direction == direction]
            if batch:
                self._call(call, group_id, GroupId=group_id, IpPermissions=batch)

    def _call(self, action: str, subject: str, **params: Any) -> dict[str, Any]:
        return call_ec2(self.client, action, subject, **params)


def call_ec2(client: Any, action: str, subject: str, **params: Any) -> dict[str, Any]:
    """One synchronous EC2 call, its errors in azfed's hierarchy (as the async backend's)."""
    from azfed.clouds.ec2 import map_botocore_error, map_error
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        out: dict[str, Any] = getattr(client, action)(**params)
    except ClientError as err:
        raise map_error(err, action, subject) from err
    except BotoCoreError as err:
        raise map_botocore_error(err, action, subject) from err
    return out

"""azfed inside Neutron: public subnets mirrored as Neutron networks, the ML2 mechanism driver
that binds burst VMs' ports, and their security groups mirrored into the public cloud (EC2
groups, or a public OpenStack's groups)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol


class GroupMirror(Protocol):
    """One public cloud's copies of Neutron security groups (`ec2_mirror.SecurityGroupMirror`
    for a VPC, `os_mirror.PublicGroupMirror` for a public OpenStack project)."""

    def sync(self, group: Mapping[str, Any]) -> str:
        """Make the copy's rules equal to the group's; the copy's id."""

    def delete(self, neutron_id: str) -> bool:
        """Delete the copy; False if the public cloud still needs it."""

    def set_instance_groups(self, instance_uuid: str, neutron_ids: Iterable[str]) -> str | None:
        """Give the Nova server's public instance (or port) exactly these groups' copies."""

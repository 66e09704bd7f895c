"""azfed's ML2 mechanism driver: binds the ports of burst VMs, mirrors their security groups.

Load it in neutron-server with `[ml2] mechanism_drivers = ...,azfed` (the entry point
`neutron.ml2.mechanism_drivers: azfed` shipped in azfed's package); its options are in
`[ml2_azfed]` (docs/driver.md, "Ports and security groups").

- **Binding.** A port whose `binding:host_id` is one of `proxy_hosts` (the public AZs' proxy
  compute hosts) is bound to its network's first segment, vif type `other`, status ACTIVE:
  the VM behind it runs in the public cloud, where no Neutron agent plugs anything, and the
  cloud's own network delivers its traffic. Other hosts are left to the other drivers.
- **Security groups.** The groups of a port bound to a proxy host are mirrored into the
  public cloud of the port's subnet: into the VPC of a subnet tagged `azfed:ec2-subnet=<id>`
  (`azfed.neutron.ec2_mirror`), into the public OpenStack `public_cloud` names for a subnet
  tagged `azfed:os-subnet=<id>` (`azfed.neutron.os_mirror`). This happens on bind and every
  port update and on Neutron's security-group and rule callbacks (so a rule change reaches
  the public cloud while the API call is answered), and a changed port's groups are applied
  to its instance (EC2) or its public port (OpenStack). A group no proxy-host port uses any
  more is deleted.

A public cloud's errors never fail a Neutron call: they are logged (`sg_mirror.failed`) and
the next event on the group or its ports makes it whole again, since every sync is a full one.
Only neutron-lib, oslo and azfed are imported here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import structlog
from azfed.errors import AzfedError, ConfigError, Problem
from azfed.neutron import GroupMirror
from azfed.neutron.ec2_mirror import SecurityGroupMirror, call_ec2, ec2_client
from azfed.neutron.os_mirror import PublicGroupMirror
from azfed.neutron.subnets import ec2_subnet_of, os_subnet_of
from azfed.nova import logs
from azfed.sdk import API_TIMEOUT_S, connector
from neutron_lib import constants as n_const
from neutron_lib.api.definitions import portbindings
from neutron_lib.callbacks import events, registry, resources
from neutron_lib.plugins import directory
from neutron_lib.plugins.ml2 import api
from oslo_config import cfg

log = structlog.get_logger(__name__)
logs.configure()  # azfed's events through oslo.log, in neutron-server's own log

VIF_TYPE: Final = portbindings.VIF_TYPE_OTHER
OPTS = [
    cfg.ListOpt(
        "proxy_hosts",
        default=[],
        help="the public AZs' proxy compute hosts (their nova.conf `host`): ports bound there "
        "belong to burst VMs",
    ),
    cfg.StrOpt("region", default="us-east-1", help="AWS region of the mirrored VPCs"),
    cfg.StrOpt("endpoint_url", help="EC2 endpoint override (a VPC endpoint, moto)"),
    cfg.StrOpt(
        "public_cloud",
        help="the public OpenStack's entry in clouds.yaml (the proxy host's [azfed] cloud): "
        "groups of ports on subnets tagged azfed:os-subnet= are mirrored there",
    ),
]
cfg.CONF.register_opts(OPTS, group="ml2_azfed")


class AzfedMechanismDriver(api.MechanismDriver):  # type: ignore[misc]
    """Binds proxy-host ports and keeps their security groups mirrored in EC2."""

    def initialize(self) -> None:
        conf = cfg.CONF.ml2_azfed
        self.proxy_hosts = frozenset(conf.proxy_hosts)
        self._client: Any = None
        self._mirrors: dict[str, SecurityGroupMirror] = {}  # by VPC id
        self._vpc_of_subnet: dict[str, str] = {}
        self._public: PublicGroupMirror | None = None
        for resource, event in (
            (resources.SECURITY_GROUP_RULE, events.AFTER_CREATE),
            (resources.SECURITY_GROUP_RULE, events.AFTER_DELETE),
        ):
            registry.subscribe(self._rule_changed, resource, event)
        registry.subscribe(self._group_deleted, resources.SECURITY_GROUP, events.AFTER_DELETE)
        log.info("ml2_azfed.started", proxy_hosts=sorted(self.proxy_hosts))

    # --- binding -----------------------------------------------------------------------------

    def bind_port(self, context: Any) -> None:
        if context.host not in self.proxy_hosts:
            return
        for segment in context.segments_to_bind:
            context.set_binding(
                segment[api.ID],
                VIF_TYPE,
                # the public cloud filters the traffic: the port's groups are mirrored there
                {portbindings.CAP_PORT_FILTER: True},
                status=n_const.PORT_STATUS_ACTIVE,
            )
            log.info("ml2_azfed.bound", port=context.current["id"], host=context.host)
            return

    # --- ports -------------------------------------------------------------------------------

    def update_port_postcommit(self, context: Any) -> None:
        port, before = context.current, context.original or {}
        if not self._on_proxy(port) and not self._on_proxy(before):
            return
        ctx = context._plugin_context.elevated()
        groups = list(port.get("security_groups") or [])
        # a port that left the proxy host (its server deleted, the port made before it kept)
        # no longer uses any of its groups in the public cloud
        kept = groups if self._on_proxy(port) else []
        dropped = set(before.get("security_groups") or []) - set(kept)
        self._guarded("port", port["id"], lambda: self._sync_port(ctx, port, groups, before))
        self._delete_unused(ctx, dropped, port["id"])

    def delete_port_postcommit(self, context: Any) -> None:
        port = context.current
        if self._on_proxy(port):
            ctx = context._plugin_context.elevated()
            self._delete_unused(ctx, port.get("security_groups") or [], port["id"])

    def _sync_port(
        self, ctx: Any, port: Mapping[str, Any], groups: list[str], before: Mapping[str, Any]
    ) -> None:
        mirror = self._mirror_for_port(ctx, port)
        if mirror is None or not self._on_proxy(port):
            return
        plugin = directory.get_plugin()
        for group_id in groups:
            mirror.sync(plugin.get_security_group(ctx, group_id))
        changed = set(groups) != set(before.get("security_groups") or groups)
        if changed and port.get("device_id"):
            mirror.set_instance_groups(port["device_id"], groups)

    # --- security groups ---------------------------------------------------------------------

    def _rule_changed(self, resource: str, event: str, trigger: Any, payload: Any) -> None:
        rule = payload.latest_state if event == events.AFTER_CREATE else None
        group_id = (rule or {}).get("security_group_id") or payload.metadata.get(
            "security_group_id"
        )
        if group_id:
            ctx = payload.context.elevated()
            self._guarded("security_group", group_id, lambda: self._sync_group(ctx, group_id))

    def _sync_group(self, ctx: Any, group_id: str) -> None:
        """Resync the group in every public cloud (VPC) where a proxy-host port uses it."""
        mirrors = {id(m): m for m in self._mirrors_using(ctx, group_id)}
        if not mirrors:
            return
        group = directory.get_plugin().get_security_group(ctx, group_id)
        for mirror in mirrors.values():
            mirror.sync(group)

    def _group_deleted(self, resource: str, event: str, trigger: Any, payload: Any) -> None:
        group_id = payload.resource_id
        self._delete_everywhere(group_id)

    def _delete_everywhere(self, group_id: str) -> None:
        # Neutron deletes only a group no port uses; only an empty referenced mirror can remain
        self._guarded("security_group", group_id, lambda: self._delete_in_ec2(group_id))
        if cfg.CONF.ml2_azfed.public_cloud:
            self._guarded(
                "security_group", group_id, lambda: self._public_mirror().delete(group_id)
            )

    def _delete_in_ec2(self, group_id: str) -> None:
        found = call_ec2(
            self._ec2(),
            "describe_security_groups",
            group_id,
            Filters=[{"Name": "group-name", "Values": [f"azfed-{group_id}"]}],
        )
        for group in found.get("SecurityGroups") or []:
            self._mirror(str(group["VpcId"])).delete(group_id)

    def _delete_unused(self, ctx: Any, group_ids: Iterable[str], leaving_port: str) -> None:
        for group_id in group_ids:
            users = [p for p in self._proxy_ports(ctx, group_id) if p["id"] != leaving_port]
            if not users:
                self._delete_everywhere(group_id)

    # --- lookups -----------------------------------------------------------------------------

    def _on_proxy(self, port: Mapping[str, Any]) -> bool:
        return port.get(portbindings.HOST_ID) in self.proxy_hosts

    def _proxy_ports(self, ctx: Any, group_id: str) -> list[dict[str, Any]]:
        if not self.proxy_hosts:
            return []
        ports: list[dict[str, Any]] = directory.get_plugin().get_ports(
            ctx,
            filters={"security_groups": [group_id], portbindings.HOST_ID: list(self.proxy_hosts)},
        )
        return ports

    def _mirrors_using(self, ctx: Any, group_id: str) -> list[GroupMirror]:
        found = (self._mirror_for_port(ctx, p) for p in self._proxy_ports(ctx, group_id))
        return [m for m in found if m is not None]

    def _mirror_for_port(self, ctx: Any, port: Mapping[str, Any]) -> GroupMirror | None:
        for ip in port.get("fixed_ips") or []:
            mirror = self._mirror_of_subnet(ctx, ip["subnet_id"])
            if mirror is not None:
                return mirror
        log.warning("ml2_azfed.port_not_mirrored", port=port["id"], fixed_ips=port.get("fixed_ips"))
        return None

    def _mirror_of_subnet(self, ctx: Any, subnet_id: str) -> GroupMirror | None:
        if subnet_id in self._vpc_of_subnet:
            return self._mirror(self._vpc_of_subnet[subnet_id])
        subnet = directory.get_plugin().get_subnet(ctx, subnet_id)
        if os_subnet_of(subnet) is not None:
            return self._public_mirror()
        vpc = self._vpc_of(subnet_id, ec2_subnet_of(subnet))
        return self._mirror(vpc) if vpc is not None else None

    def _vpc_of(self, subnet_id: str, ec2_subnet: str | None) -> str | None:
        if subnet_id not in self._vpc_of_subnet:
            if ec2_subnet is None:
                return None
            out = call_ec2(self._ec2(), "describe_subnets", ec2_subnet, SubnetIds=[ec2_subnet])
            self._vpc_of_subnet[subnet_id] = str(out["Subnets"][0]["VpcId"])
        return self._vpc_of_subnet[subnet_id]

    def _mirror(self, vpc_id: str) -> SecurityGroupMirror:
        if vpc_id not in self._mirrors:
            self._mirrors[vpc_id] = SecurityGroupMirror(self._ec2(), vpc_id)
        return self._mirrors[vpc_id]

    def _public_mirror(self) -> PublicGroupMirror:
        if self._public is None:
            cloud = cfg.CONF.ml2_azfed.public_cloud
            if not cloud:
                raise ConfigError(
                    "[ml2_azfed]",
                    [
                        Problem(
                            "public_cloud",
                            None,
                            "unset, but a port on a subnet tagged azfed:os-subnet= is bound to "
                            "a proxy host: its groups cannot be mirrored",
                        )
                    ],
                )
            self._public = PublicGroupMirror(connector(cloud, timeout_s=API_TIMEOUT_S)())
        return self._public

    def _ec2(self) -> Any:
        if self._client is None:
            conf = cfg.CONF.ml2_azfed
            self._client = ec2_client(conf.region, conf.endpoint_url)
        return self._client

    def _guarded(self, kind: str, subject: str, work: Any) -> None:
        """Run one mirror step; an EC2 failure is logged, never failing Neutron's call."""
        try:
            work()
        except AzfedError:
            log.exception("sg_mirror.failed", kind=kind, subject=subject)

# Nova calls these methods positionally with its own signatures: PLR0917 cannot apply here.
# ruff: noqa: PLR0917
"""FederationDriver: the nova-compute virt driver of the public-AZ proxy host.

Load it with `compute_driver = azfed.nova.driver.FederationDriver` on the proxy host; its
options live in nova.conf `[azfed]` (see docs/driver.md). It is a thin adapter: Nova objects
in, `azfed.nova.proxy.ProxyHost` calls out. Only Nova, oslo and what Nova's venv carries may be
imported here.

Addresses: without Neutron ports for burst instances, Nova has no network_info to show, so the
driver writes the public cloud's addresses into the server's metadata (`azfed_private_ip`,
`azfed_public_ip`, `azfed_remote_id`, `azfed_provider`), which `openstack server show`
lists under properties. The receiver refreshes the same keys from the agent's reports.
"""

from __future__ import annotations

import functools
import io
import subprocess
import uuid
from typing import Any, ClassVar

import nova.conf
import nova.virt.node
import structlog
from azfed.aws import AWS_CLIENT_DEFAULTS
from azfed.clouds import (
    BACKENDS,
    CloudUnavailableError,
    HibernationUnsupported,
    NetworkAttachment,
    RemoteInstance,
    RemoteState,
)
from azfed.errors import RESCHEDULABLE, CloudError, ConfigError, NotFoundError
from azfed.nova import logs
from azfed.nova.outcomes import CapacityReporter, read_secret
from azfed.nova.ports import PortNotUsable, PortResolver
from azfed.nova.proxy import (
    IMAGE_PROPERTY,
    Capacity,
    ProxyHost,
    ProxySettings,
    Report,
    ReportUnavailable,
    parse_flavor_map,
)
from azfed.nova.refusals import RefusedOperations, refuse
from azfed.policy.decide import BURST_TRAIT
from nova import context as nova_context
from nova import exception, objects
from nova.compute import power_state, task_states, vm_states
from nova.compute import utils as compute_utils
from nova.image import glance
from nova.objects import diagnostics as diagnostics_obj
from nova.objects import fields as obj_fields
from nova.virt import driver, hardware
from oslo_config import cfg

CONF = nova.conf.CONF
log = structlog.get_logger(__name__)
# azfed's events (the proxy's, the clouds') go through Nova's logging: its file, its request id
logs.configure()

_CAPACITY = Capacity()  # the defaults of the public AZ's burst allowance
OPTS = [
    cfg.StrOpt("provider", default="ec2", choices=sorted(BACKENDS)),
    cfg.StrOpt("region", default="us-east-1", help="AWS region"),
    cfg.StrOpt("endpoint_url", help="AWS endpoint override (moto, a VPC endpoint)"),
    cfg.StrOpt("subnet_id", help="the VPC subnet burst instances go into"),
    cfg.ListOpt("security_group_ids", default=[]),
    cfg.StrOpt("key_name", help="EC2 key pair / public-cloud keypair name"),
    cfg.DictOpt("flavor_map", default={}, help="nova flavor:provider type, comma separated"),
    cfg.StrOpt("default_image", help="AMI id / public image used when the image has none"),
    cfg.FloatOpt("connect_timeout_s", default=AWS_CLIENT_DEFAULTS.connect_timeout_s),
    cfg.FloatOpt("read_timeout_s", default=AWS_CLIENT_DEFAULTS.read_timeout_s),
    cfg.IntOpt(
        "max_attempts",
        default=AWS_CLIENT_DEFAULTS.max_attempts,
        min=1,
        help="botocore total_max_attempts per call",
    ),
    cfg.IntOpt("throttle_retries", default=3, min=0),
    cfg.FloatOpt("wait_delay_s", default=5.0),
    cfg.IntOpt("wait_attempts", default=60),
    cfg.StrOpt("cloud", help="public OpenStack: its clouds.yaml entry"),
    cfg.StrOpt("public_network", help="public OpenStack: network name for burst servers"),
    cfg.StrOpt("public_az", help="public OpenStack: availability zone to boot in"),
    cfg.ListOpt("public_security_groups", default=[]),
    cfg.StrOpt("receiver_url", help="azfed receiver; get_info trusts fresh agent reports"),
    cfg.FloatOpt("receiver_max_age_s", default=120.0),
    cfg.IntOpt("vcpus", default=_CAPACITY.vcpus, min=1, help="burst allowance for Placement"),
    cfg.IntOpt("memory_mb", default=_CAPACITY.memory_mb, min=1),
    cfg.IntOpt("disk_gb", default=_CAPACITY.disk_gb, min=1),
    cfg.IntOpt("max_instances", default=_CAPACITY.max_instances, min=1),
    cfg.FloatOpt("spawn_timeout_s", default=900.0),
    cfg.StrOpt(
        "receiver_writer_id",
        help="this host's writer id at the receiver (default: [DEFAULT] host), to report the "
        "boots that failed for lack of capacity (POST /v1/capacity-events)",
    ),
    cfg.StrOpt(
        "receiver_secret_file",
        help="the writer's secret, the same as <secrets_dir>/<secrets_prefix><writer id> on the "
        "receiver; unset, capacity failures are not reported (the policy cannot back off)",
    ),
]
CONF.register_opts(OPTS, group="azfed")

_POWER = {
    RemoteState.RUNNING: power_state.RUNNING,
    RemoteState.PENDING: power_state.NOSTATE,
    RemoteState.STOPPING: power_state.SHUTDOWN,
    RemoteState.STOPPED: power_state.SHUTDOWN,
    RemoteState.ERROR: power_state.CRASHED,
    RemoteState.UNKNOWN: power_state.NOSTATE,
    # terminated behind Nova's back: Nova's power-state sync stops the server (power_off)
    RemoteState.TERMINATED: power_state.SHUTDOWN,
}
# what a snapshot's Glance image holds: the AMI is the image, this body only makes it active
SNAPSHOT_BODY = (
    b"azfed: this image is a public-cloud snapshot; its content is the public image named in "
    b"its azfed properties, and it boots only in the public availability zone.\n"
)


def port_resolver(conf: Any) -> PortResolver:
    """How the proxy host reads a server's port and mirrors its groups into its cloud."""
    c = conf.azfed
    if c.provider == "openstack":
        from azfed.sdk import connector

        public = backend_settings(conf)  # the same cloud, timeout and credentials
        return PortResolver(
            "openstack", connector(public.cloud, timeout_s=public.timeout_s, auth=dict(public.auth))
        )
    from azfed.neutron.ec2_mirror import ec2_client

    return PortResolver("ec2", lambda: ec2_client(c.region, c.endpoint_url))


def proxy_settings(conf: Any) -> ProxySettings:
    c = conf.azfed
    return ProxySettings(
        provider=c.provider,
        flavor_map=parse_flavor_map(dict(c.flavor_map)),
        default_image=c.default_image,
        capacity=Capacity(c.vcpus, c.memory_mb, c.disk_gb, c.max_instances),
        receiver_url=c.receiver_url,
        receiver_max_age_s=c.receiver_max_age_s,
        spawn_timeout_s=c.spawn_timeout_s,
    )


def backend_settings(conf: Any) -> Any:
    c = conf.azfed
    if c.provider == "openstack":
        from azfed.clouds.openstack import OpenStackSettings

        return OpenStackSettings(
            cloud=c.cloud,
            network=c.public_network,
            key_name=c.key_name,
            security_groups=tuple(c.public_security_groups),
            availability_zone=c.public_az,
        )
    from azfed.clouds.ec2 import Ec2Settings

    return Ec2Settings(
        region=c.region,
        endpoint_url=c.endpoint_url,
        subnet_id=c.subnet_id,
        security_group_ids=tuple(c.security_group_ids),
        key_name=c.key_name,
        connect_timeout_s=c.connect_timeout_s,
        read_timeout_s=c.read_timeout_s,
        max_attempts=c.max_attempts,
        throttle_retries=c.throttle_retries,
        wait_delay_s=c.wait_delay_s,
        wait_attempts=c.wait_attempts,
    )


def node_identity(host: str) -> str:
    """This host's stable node UUID, kept where Nova keeps it (the compute_id file).

    A host switched to this driver keeps the compute node Nova already has for it (as Nova
    itself does on upgrade), so its Placement provider and instances stay where they are.
    """
    known: str | None = nova.virt.node.read_local_node_uuid()
    if known:
        return known
    ctx = nova_context.get_admin_context()
    try:
        nodes = objects.ComputeNodeList.get_all_by_host(ctx, host)
    except exception.ComputeHostNotFound:
        nodes = []
    node_uuid = nodes[0].uuid if len(nodes) == 1 else str(uuid.uuid4())
    nova.virt.node.write_local_node_uuid(node_uuid)
    return str(node_uuid)


class FederationDriver(RefusedOperations, driver.ComputeDriver):  # type: ignore[misc]
    """Runs the instances scheduled to the public AZ in AWS EC2 or a public OpenStack.

    What the public AZ cannot do is refused in RefusedOperations (azfed/nova/refusals.py).
    """

    capabilities: ClassVar[dict[str, bool]] = {
        **driver.ComputeDriver.capabilities,
        # the public AZ has one proxy host: a resize is always "to the same host"
        "supports_migrate_to_same_host": True,
        "supports_image_type_raw": True,
        "supports_image_type_qcow2": True,
        "supports_image_type_ami": True,
    }

    def __init__(self, virtapi: Any, read_only: bool = False) -> None:
        super().__init__(virtapi)
        self._proxy: ProxyHost | None = None
        self._host: str = CONF.host
        self._node_uuid: str | None = None
        self._ports: PortResolver | None = None

    @property
    def proxy(self) -> ProxyHost:
        if self._proxy is None:
            self._proxy = ProxyHost.create(proxy_settings(CONF), backend_settings(CONF))
        return self._proxy

    # --- host ------------------------------------------------------------------------------

    def init_host(self, host: str) -> None:
        self._host = host
        self._node_uuid = node_identity(host)
        try:
            live = len(self.proxy.list_all())
        except CloudError as err:
            # the cloud may be briefly unreachable: the host must still start and report
            # its inventory; each instance call fails on its own with a clear error
            log.warning(
                "host.cloud_unreachable", host=host, provider=CONF.azfed.provider, error=str(err)
            )
            live = -1
        log.info(
            "host.started",
            host=host,
            provider=CONF.azfed.provider,
            live_instances=live,
            node=self._node_uuid,
        )

    def cleanup_host(self, host: str) -> None:
        if self._proxy is not None:
            self._proxy.close()
            self._proxy = None

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        return [self._host]

    def get_nodenames_by_uuid(self, refresh: bool = False) -> dict[str, str]:
        return {self._node_uuid or node_identity(self._host): self._host}

    def node_is_available(self, nodename: str) -> bool:
        return nodename == self._host

    def get_host_ip_addr(self) -> str:
        return str(CONF.my_ip)

    def get_available_resource(self, nodename: str) -> dict[str, Any]:
        cap = self.proxy.settings.capacity
        return {
            "vcpus": cap.vcpus,
            "memory_mb": cap.memory_mb,
            "local_gb": cap.disk_gb,
            "vcpus_used": 0,
            "memory_mb_used": 0,
            "local_gb_used": 0,
            "hypervisor_type": f"azfed-{CONF.azfed.provider}",
            "hypervisor_version": 1000,
            "hypervisor_hostname": nodename,
            "cpu_info": "{}",
            "disk_available_least": cap.disk_gb,
            "supported_instances": [
                (obj_fields.Architecture.X86_64, obj_fields.HVType.KVM, obj_fields.VMMode.HVM)
            ],
            "numa_topology": None,
            "uuid": self._node_uuid or node_identity(self._host),
        }

    def update_provider_tree(
        self, provider_tree: Any, nodename: str, allocations: Any = None
    ) -> None:
        """Report the public AZ's burst allowance (nova.conf [azfed]) as this host's inventory."""
        cap = self.proxy.settings.capacity

        def inv(total: int) -> dict[str, Any]:
            # ratio 1.0: the allowance is already what the operator wants to spend
            return {
                "total": total,
                "min_unit": 1,
                "max_unit": total,
                "step_size": 1,
                "allocation_ratio": 1.0,
                "reserved": 0,
            }

        provider_tree.update_inventory(
            nodename,
            {"VCPU": inv(cap.vcpus), "MEMORY_MB": inv(cap.memory_mb), "DISK_GB": inv(cap.disk_gb)},
        )
        # snapshots of burst instances require it: Placement offers them only this host
        provider_tree.add_traits(nodename, BURST_TRAIT)

    # --- reads -----------------------------------------------------------------------------

    def list_instances(self) -> list[str]:
        """Nova's names (`instance.name`) of the live instances this host created.

        Each carries the name in a label written at spawn; one launched before azfed wrote
        it is named through its Nova UUID.
        """
        live = self.proxy.list_all()
        named = [r.instance_name for r in live if r.instance_name]
        unnamed = [r.instance_uuid for r in live if r.instance_uuid and not r.instance_name]
        return named + _nova_names(unnamed)

    def list_instance_uuids(self) -> list[str]:
        return [r.instance_uuid for r in self.proxy.list_all() if r.instance_uuid]

    def get_info(self, instance: Any, use_cache: bool = True) -> Any:
        try:
            state = self.proxy.state(instance.uuid)
        except CloudError as err:
            # unknown, not gone: Nova's power-state sync leaves NOSTATE instances alone, and
            # the compute service must start even while the cloud is unreachable
            log.warning("instance.state_unreadable", instance_uuid=instance.uuid, error=str(err))
            return hardware.InstanceInfo(state=power_state.NOSTATE)
        if state is None:
            raise exception.InstanceNotFound(instance_id=instance.uuid)
        return hardware.InstanceInfo(state=_POWER[state])

    def get_console_output(self, context: Any, instance: Any) -> str:
        return str(self._call(instance, lambda: self.proxy.console_output(instance.uuid)))

    # --- lifecycle -------------------------------------------------------------------------

    def spawn(
        self,
        context: Any,
        instance: Any,
        image_meta: Any,
        injected_files: Any,
        admin_password: Any,
        allocations: Any,
        network_info: Any = None,
        block_device_info: Any = None,
        power_on: bool = True,
        accel_info: Any = None,
    ) -> None:
        try:
            request = self.proxy.request_for(
                instance_uuid=instance.uuid,
                project_id=instance.project_id,
                name=instance.display_name or instance.uuid,
                instance_name=instance.name,
                flavor=instance.flavor.name,
                image_properties=_image_properties(instance),
                user_data=instance.user_data,
                network=self._attachment(context, network_info),
            )
            remote = self.proxy.spawn(request)
            self._follow_address(context, instance, request.network, remote)
            if not power_on:
                self.proxy.stop(instance.uuid)
        except CloudError as err:
            raise _spawn_error(instance, err) from err
        _record_addresses(instance, remote, CONF.azfed.provider)
        _report_launch(instance)

    def _attachment(self, context: Any, network_info: Any) -> NetworkAttachment | None:
        """The server's Neutron port in the public cloud's terms (None without a port)."""
        if not network_info:
            return None
        if self._ports is None:
            self._ports = port_resolver(CONF)
        return self._ports.attachment(context, list(network_info))

    def _follow_address(
        self, context: Any, instance: Any, net: NetworkAttachment | None, remote: RemoteInstance
    ) -> None:
        """A public OpenStack that did not let azfed choose the address gave another one: the
        local port moves to it. If it cannot (the address is taken locally), the server is
        removed from the public cloud and the build fails, leaving nothing behind."""
        if net is None or self._ports is None or remote.private_ip in (None, net.private_ip):
            return
        try:
            self._ports.readdress(context, instance, net, str(remote.private_ip))
        except Exception as err:  # Neutron's client: its own errors, auth plugins', requests'
            self.proxy.destroy(instance.uuid)
            raise PortNotUsable(
                f"the public cloud gave {remote.private_ip} instead of {net.private_ip}, and "
                f"port {net.port_id} could not be moved to it ({type(err).__name__}: {err})"
            ) from err

    def destroy(
        self,
        context: Any,
        instance: Any,
        network_info: Any,
        block_device_info: Any = None,
        destroy_disks: bool = True,
        destroy_secrets: bool = True,
    ) -> None:
        if instance.task_state == task_states.RESIZE_REVERTING:
            return  # a same-host resize revert keeps the one remote instance (see below)
        self._call(instance, lambda: self.proxy.destroy(instance.uuid), missing_ok=True)

    def cleanup(
        self,
        context: Any,
        instance: Any,
        network_info: Any,
        block_device_info: Any = None,
        destroy_disks: bool = True,
        migrate_data: Any = None,
        destroy_vifs: bool = True,
        destroy_secrets: bool = True,
    ) -> None:
        """Nothing is kept on the proxy host itself: destroy() already removed the instance."""

    def reboot(
        self,
        context: Any,
        instance: Any,
        network_info: Any,
        reboot_type: str,
        block_device_info: Any = None,
        bad_volumes_callback: Any = None,
        accel_info: Any = None,
        share_info: Any = None,
    ) -> None:
        hard = reboot_type.upper() == "HARD"
        self._call(instance, lambda: self.proxy.reboot(instance.uuid, hard))

    def power_off(self, instance: Any, timeout: int = 0, retry_interval: int = 0) -> None:
        """Stop the instance; one terminated in the public cloud is off already (Nova's
        power-state sync stops it so): say so in an instance fault, and succeed."""
        try:
            self.proxy.stop(instance.uuid)
        except NotFoundError as err:
            if self.proxy.state(instance.uuid) is not RemoteState.TERMINATED:
                raise _nova_error(instance, err) from err
            _record_terminated(instance)
        except CloudError as err:
            raise _nova_error(instance, err) from err

    def power_update_event(self, instance: Any, target_power_state: str) -> None:
        """Nova's power-update event: azfed's receiver sends POWER_OFF when the agent reports
        the instance stopped or terminated outside Nova, and Nova's view follows the cloud's
        (Nova has set the task state; this sets the rest, as Ironic's driver does). A
        terminated instance also gets the instance fault that says so."""
        if target_power_state == "POWER_OFF":
            power, vm, expected = power_state.SHUTDOWN, vm_states.STOPPED, task_states.POWERING_OFF
            if self._remote_state(instance) in (None, RemoteState.TERMINATED):
                _record_terminated(instance)
        else:
            power, vm, expected = power_state.RUNNING, vm_states.ACTIVE, task_states.POWERING_ON
        instance.power_state, instance.vm_state, instance.task_state = power, vm, None
        instance.save(expected_task_state=expected)

    def _remote_state(self, instance: Any) -> RemoteState | None:
        try:
            return self.proxy.state(instance.uuid)
        except CloudError:
            log.warning("instance.state_unreadable", instance_uuid=instance.uuid, exc_info=True)
            return RemoteState.UNKNOWN

    def power_on(
        self,
        context: Any,
        instance: Any,
        network_info: Any,
        block_device_info: Any = None,
        accel_info: Any = None,
        share_info: Any = None,
    ) -> None:
        self._call(instance, lambda: self.proxy.start(instance.uuid))

    # --- suspend: EC2 hibernation ----------------------------------------------------------

    def suspend(self, context: Any, instance: Any) -> None:
        """Hibernate the instance (RAM kept on its root volume) where it was launched with
        hibernation; any other is refused: stop it instead."""
        try:
            self.proxy.hibernate(instance.uuid)
        except HibernationUnsupported as err:
            raise refuse("suspend") from err
        except CloudError as err:
            raise _nova_error(instance, err) from err

    def resume(
        self,
        context: Any,
        instance: Any,
        network_info: Any,
        block_device_info: Any = None,
        share_info: Any = None,
    ) -> None:
        """Start a hibernated instance: EC2 restores its RAM. One launched without hibernation
        was never suspended: refused as suspend is."""
        remote = self._call(instance, lambda: self.proxy.find(instance.uuid))
        if remote is None or not remote.can_hibernate:
            raise refuse("resume", "suspend")
        self._call(instance, lambda: self.proxy.start(instance.uuid))

    # --- snapshot: an AMI behind the Glance image ------------------------------------------

    def snapshot(self, context: Any, instance: Any, image_id: str, update_task_state: Any) -> None:
        """An AMI of the instance, registered as the Glance image Nova created (`image_id`).

        The Glance image becomes active with a placeholder body and properties that make a
        boot of it burst from the AMI (and only burst: it requires the public AZ's trait). If
        anything fails once the AMI exists, the AMI is removed; Nova deletes its image itself.
        """
        if self._call(instance, lambda: self.proxy.find(instance.uuid)) is None:
            raise exception.InstanceNotRunning(instance_id=instance.uuid)
        images = glance.API()
        snapshot = images.get(context, image_id)
        update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
        ami = self._call(
            instance,
            lambda: self.proxy.snapshot(instance.uuid, f"azfed-{image_id}", snapshot["name"]),
        )
        try:
            update_task_state(
                task_state=task_states.IMAGE_UPLOADING,
                expected_state=task_states.IMAGE_PENDING_UPLOAD,
            )
            images.update(
                context,
                image_id,
                _snapshot_metadata(instance, ami, CONF.azfed.provider),
                data=io.BytesIO(SNAPSHOT_BODY),
                purge_props=False,
            )
        except BaseException:
            self._forget_image(instance, ami)
            raise
        log.info("snapshot.created", instance_uuid=instance.uuid, image=image_id, ami=ami)

    def _forget_image(self, instance: Any, ami: str) -> None:
        try:
            self.proxy.delete_image(ami)
        except CloudError:
            log.exception("snapshot.cleanup_failed", instance_uuid=instance.uuid, ami=ami)

    # --- diagnostics: the agent's last report ----------------------------------------------

    def get_instance_diagnostics(self, instance: Any) -> Any:
        report = self._report(instance)
        diags = diagnostics_obj.Diagnostics(
            state=_DIAG_STATE[_POWER[report.state]],
            hypervisor=f"azfed-{CONF.azfed.provider}",
            config_drive=False,
        )
        cpu = report.value("cpu")
        if cpu is not None:
            diags.add_cpu(id=0, time=int(cpu))
        for vnic in report.devices("instance_network_interface"):
            diags.add_nic(**_nic_figures(report, vnic))
        for disk in report.devices("instance_disk"):
            diags.add_disk(**_disk_figures(report, disk))
        diags.memory_details = diagnostics_obj.MemoryDiagnostics(
            maximum=_int(report.value("memory")), used=_int(report.value("memory.usage"))
        )
        return diags

    def get_diagnostics(self, instance: Any) -> dict[str, Any]:
        """The legacy form (microversions before 2.48): the libvirt driver's key names, but
        memory in MiB under names that say so (libvirt's `memory` is KiB)."""
        report = self._report(instance)
        out: dict[str, Any] = {"state": report.state.value, "remote_id": report.remote_id}
        for key, meter in (
            ("cpu0_time", "cpu"),
            ("memory_mib", "memory"),
            ("memory_used_mib", "memory.usage"),
        ):
            value = report.value(meter)
            if value is not None:
                out[key] = int(value)
        for vnic in report.devices("instance_network_interface"):
            out.update({f"{vnic}_{k}": v for k, v in _legacy_nic(report, vnic).items()})
        for disk in report.devices("instance_disk"):
            out.update({f"{disk}_{k}": v for k, v in _legacy_disk(report, disk).items()})
        return out

    def _report(self, instance: Any) -> Report:
        try:
            return self.proxy.report(instance.uuid)
        except ReportUnavailable as err:
            raise exception.InstanceNotReady(
                message=f"no diagnostics of instance {instance.uuid}: {err}"
            ) from err

    # --- resize to self --------------------------------------------------------------------

    def migrate_disk_and_power_off(
        self,
        context: Any,
        instance: Any,
        dest: str,
        flavor: Any,
        network_info: Any,
        block_device_info: Any = None,
        timeout: int = 0,
        retry_interval: int = 0,
    ) -> str:
        # Nova passes the destination's address (its my_ip), not its host name
        if dest not in (self._host, self.get_host_ip_addr()):
            raise exception.MigrationPreCheckError(
                reason="burst instances can only be resized in place on the proxy host"
            )
        self._call(instance, lambda: self.proxy.stop(instance.uuid))
        return "{}"

    def finish_migration(
        self,
        context: Any,
        migration: Any,
        instance: Any,
        disk_info: Any,
        network_info: Any,
        image_meta: Any,
        resize_instance: bool,
        allocations: Any,
        block_device_info: Any = None,
        power_on: bool = True,
        share_info: Any = None,
    ) -> None:
        self._resize_to(instance, instance.flavor.name, power_on)

    def confirm_migration(
        self, context: Any, migration: Any, instance: Any, network_info: Any
    ) -> None:
        """The instance was resized in place: there is no source copy to remove."""

    def finish_revert_migration(
        self,
        context: Any,
        instance: Any,
        network_info: Any,
        migration: Any,
        block_device_info: Any = None,
        power_on: bool = True,
        share_info: Any = None,
    ) -> None:
        # by now Nova has put the old flavor back on the instance
        self._resize_to(instance, instance.flavor.name, power_on)

    def _resize_to(self, instance: Any, flavor: str, power_on: bool) -> None:
        self._call(instance, lambda: self.proxy.resize(instance.uuid, flavor))
        if power_on:
            self._call(instance, lambda: self.proxy.start(instance.uuid))

    # --- host start, reboots, soft delete -------------------------------------------------

    def resume_state_on_host_boot(
        self,
        context: Any,
        instance: Any,
        network_info: Any,
        share_info: Any,
        block_device_info: Any = None,
    ) -> None:
        """Nova expects the instance running after the host's restart: start it if it stopped.

        A restart of the proxy host does not touch its instances in the public cloud, so
        usually there is nothing to do (a start of a running instance is a no-op there).
        """
        try:
            self.proxy.start(instance.uuid)
        except CloudUnavailableError as err:
            # unknown, not failed: Nova would put every instance in ERROR for a cloud that
            # was briefly unreachable while the host started; its power-state sync
            # reconciles the instance once the cloud answers
            log.warning("instance.resume_deferred", instance_uuid=instance.uuid, error=str(err))
        except CloudError as err:
            raise _nova_error(instance, err) from err

    def poll_rebooting_instances(self, timeout: int, instances: Any) -> None:
        """Nothing can be left rebooting: reboot() returns once the cloud has taken the reboot,
        or raises (and Nova resets the task state); a reboot interrupted by a restart of
        nova-compute is retried by Nova itself when the host starts."""

    def soft_delete(self, instance: Any) -> None:
        """Keep the instance until Nova reclaims it, stopped so it costs no compute time."""
        self._call(instance, lambda: self.proxy.stop(instance.uuid))

    def restore(self, instance: Any) -> None:
        self._call(instance, lambda: self.proxy.start(instance.uuid))

    def get_instance_disk_info(self, instance: Any, block_device_info: Any = None) -> str:
        """No disk of a burst instance is on the proxy host (Nova wants a JSON list)."""
        return "[]"

    # --- the proxy host itself -------------------------------------------------------------

    def get_host_uptime(self) -> str:
        """The proxy host's own uptime, as `uptime` prints it (as the libvirt driver does)."""
        run = subprocess.run(
            ["uptime"], env={"LANG": "C"}, capture_output=True, text=True, check=True, timeout=10
        )
        return run.stdout

    # --- errors ----------------------------------------------------------------------------

    def _call(self, instance: Any, fn: Any, missing_ok: bool = False) -> Any:
        """Run one proxy call; cloud errors become the Nova exceptions callers expect."""
        try:
            return fn()
        except NotFoundError as err:
            if missing_ok:
                return None
            raise _nova_error(instance, err) from err
        except CloudError as err:
            raise _nova_error(instance, err) from err


def _nova_error(instance: Any, err: CloudError) -> Exception:
    """The Nova exception a caller expects for a cloud error (called while handling it)."""
    if isinstance(err, NotFoundError):
        return exception.InstanceNotFound(instance_id=instance.uuid)  # type: ignore[no-any-return]
    log.exception("cloud_call.failed", instance_uuid=instance.uuid)
    return exception.NovaException(str(err))  # type: ignore[no-any-return]


# Nova keeps a metadata value to this many characters
METADATA_VALUE_MAX = 255
FALLBACK_REASON_KEY = "azfed_fallback_reason"


def _spawn_error(instance: Any, err: CloudError) -> Exception:
    """Nova's exception for a spawn that failed with `err` (called while handling it).

    No capacity, a limit or throttling (errors.RESCHEDULABLE): a reschedule, so Nova's conductor
    tries the boot's next alternate host, which the scheduler put in the policy's fallback order
    (the next public AZ, or local). Anything else: an abort (it would fail anywhere), the
    cloud's message as the instance's fault. A reschedule's message reaches the fault only when
    [scheduler] max_attempts runs out ("Last exception: ..."); when the alternates run out first
    Nova says only "Exhausted all hosts", so the cloud's reason is also kept in the server's
    metadata (`openstack server show` lists it under properties)."""
    reschedule = isinstance(err, RESCHEDULABLE)
    log.exception("spawn.failed", instance_uuid=instance.uuid, reschedule=reschedule,
                  az=instance.availability_zone, error_code=err.code)  # fmt: skip
    if not reschedule:
        return exception.BuildAbortException(instance_uuid=instance.uuid, reason=str(err))  # type: ignore[no-any-return]
    _report_failure(instance, err)  # the scheduler's policy backs this AZ off for the flavor
    reason = f"{instance.availability_zone}: {err}"
    instance.metadata = {
        **dict(instance.metadata or {}),
        FALLBACK_REASON_KEY: reason[:METADATA_VALUE_MAX],
    }
    instance.save()
    return exception.RescheduledException(instance_uuid=instance.uuid, reason=str(err))  # type: ignore[no-any-return]


@functools.cache
def _capacity_reporter() -> CapacityReporter | None:
    """This host's reporter of capacity failures (None: not configured)."""
    c = CONF.azfed
    if not c.receiver_url or not c.receiver_secret_file:
        return None
    secret = read_secret(c.receiver_secret_file)
    return CapacityReporter(c.receiver_url, c.receiver_writer_id or CONF.host, secret, log)


def _report_failure(instance: Any, err: CloudError) -> None:
    """Tell the receiver (docs/policy.md, "Capacity fallback"): the boot is rescheduled
    whether the receiver hears of it or not."""
    _report_outcome(instance, str(err))


def _report_launch(instance: Any) -> None:
    """Tell the receiver the boot launched, so a back-off of this AZ for the flavor ends with
    the streak it belonged to (the instance runs whatever the receiver says)."""
    _report_outcome(instance, None)


def _report_outcome(instance: Any, failure: str | None) -> None:
    """A failed (`failure` is the cloud's reason) or launched boot to the receiver, if this
    host reports to one; never raises."""
    try:
        reporter = _capacity_reporter()
    except ConfigError as bad:
        log.error("capacity.report_unconfigured", error=str(bad))  # noqa: TRY400 - says it all
        return
    if reporter is None:
        return
    flavor = instance.flavor.name
    itype = parse_flavor_map(dict(CONF.azfed.flavor_map)).get(flavor, "")
    az = instance.availability_zone or ""
    if failure is None:
        reporter.launched(instance.uuid, az, flavor, itype)
    else:
        reporter.failed(instance.uuid, az, flavor, itype, failure)


def _nova_names(instance_uuids: list[str]) -> list[str]:
    """Nova's names of these instances, deleted ones included (they may still run)."""
    if not instance_uuids:
        return []
    ctx = nova_context.get_admin_context(read_deleted="yes")
    found = objects.InstanceList.get_by_filters(ctx, {"uuid": instance_uuids}, expected_attrs=[])
    return [str(i.name) for i in found]


def _image_properties(instance: Any) -> dict[str, Any]:
    """The image's properties, the operator's own included.

    ImageMetaProps drops properties outside Nova's schema (like `azfed_ec2_ami`), but Nova
    copies every image property into the instance's system metadata as `image_<key>`.
    """
    sysmeta = dict(instance.system_metadata or {})
    return {k[len("image_") :]: v for k, v in sysmeta.items() if k.startswith("image_")}


def _record_addresses(instance: Any, remote: RemoteInstance, provider: str) -> None:
    values = {
        "azfed_private_ip": remote.private_ip,
        "azfed_public_ip": remote.public_ip,
        "azfed_remote_id": remote.remote_id,
        "azfed_provider": provider,
    }
    meta = dict(instance.metadata or {})
    meta.update({k: v for k, v in values.items() if v})
    instance.metadata = meta
    instance.save()


# Nova's power state -> the Diagnostics object's state names (InstancePowerState)
_DIAG_STATE = {
    power_state.NOSTATE: "pending",
    power_state.RUNNING: "running",
    power_state.SHUTDOWN: "shutdown",
    power_state.CRASHED: "crashed",
}
_NIC_METERS = {
    "rx_octets": "network.incoming.bytes",
    "rx_packets": "network.incoming.packets",
    "tx_octets": "network.outgoing.bytes",
    "tx_packets": "network.outgoing.packets",
}
_DISK_METERS = {
    "read_bytes": "disk.device.read.bytes",
    "read_requests": "disk.device.read.requests",
    "write_bytes": "disk.device.write.bytes",
    "write_requests": "disk.device.write.requests",
}
# the libvirt driver's legacy diagnostics suffixes, for the same figures
_LEGACY_NIC = {"rx": "rx_octets", "rx_packets": "rx_packets", "tx": "tx_octets",
               "tx_packets": "tx_packets"}  # fmt: skip
_LEGACY_DISK = {"read": "read_bytes", "read_req": "read_requests", "write": "write_bytes",
                "write_req": "write_requests"}  # fmt: skip


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def _nic_figures(report: Report, device: str) -> dict[str, int | None]:
    return {k: _int(report.value(m, device)) for k, m in _NIC_METERS.items()}


def _disk_figures(report: Report, device: str) -> dict[str, int | None]:
    return {k: _int(report.value(m, device)) for k, m in _DISK_METERS.items()}


def _legacy_nic(report: Report, device: str) -> dict[str, int]:
    figures = _nic_figures(report, device)
    return {k: v for k, f in _LEGACY_NIC.items() if (v := figures[f]) is not None}


def _legacy_disk(report: Report, device: str) -> dict[str, int]:
    figures = _disk_figures(report, device)
    return {k: v for k, f in _LEGACY_DISK.items() if (v := figures[f]) is not None}


def _snapshot_metadata(instance: Any, public_image: str, provider: str) -> dict[str, Any]:
    """The Glance image's fields once the public image exists (merged into what Nova set)."""
    return {
        "status": "active",
        "disk_format": "raw",
        "container_format": "bare",
        "properties": {
            IMAGE_PROPERTY[provider]: public_image,
            f"trait:{BURST_TRAIT}": "required",
            "azfed_snapshot_of": instance.uuid,
            "image_location": "snapshot",
            "image_state": "available",
            "owner_id": instance.project_id,
        },
    }


def _record_terminated(instance: Any) -> None:
    """The instance fault saying the public cloud's instance is gone, not Nova's doing."""
    remote_id = (instance.metadata or {}).get("azfed_remote_id", "its public-cloud instance")
    gone = exception.InstanceNotFound(
        instance_id=instance.uuid,
        message=(
            f"{remote_id} of instance {instance.uuid} was terminated in the public cloud "
            "outside Nova: the server is stopped; delete it, or rebuild it to launch a new one"
        ),
    )
    log.warning("instance.terminated_outside_nova", instance_uuid=instance.uuid, id=remote_id)
    ctx = nova_context.get_admin_context()
    compute_utils.add_instance_fault_from_exc(ctx, instance, gone)

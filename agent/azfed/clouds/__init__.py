"""Public-cloud backends behind one small Protocol, registered by name and imported lazily.

The proxy compute host (`azfed.nova.driver`) and the tests pick a backend by its name in
`BACKENDS`; only the chosen module is imported, so a host that bursts to EC2 never imports
openstacksdk and the other way round.

The clouds are the source of truth for which remote instance belongs to which Nova instance:
every backend tags (EC2) or labels (OpenStack metadata) what it creates with the Nova UUID and
finds it again by that tag. There is no private database to drift out of sync.
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from azfed.errors import CloudError, PermanentError
from azfed.wire import State

# The tag (EC2) or metadata key (OpenStack) whose value is the Nova instance UUID. A fixed
# name, not a setting: the driver, both collectors, the receiver's cleaner and the driver's IAM
# policy (packaging/iam/driver-policy.json, tied by tests/packaging/test_iam.py) must agree.
UUID_TAG: Final = "azfed:instance-uuid"
PROJECT_TAG: Final = "azfed:project-id"
# Nova's `instance.name` (instance-0000002a), what the driver's list_instances() returns: Nova
# names it from its instance_name_template and the database id, which no cloud API knows
NAME_TAG: Final = "azfed:instance-name"

# A public cloud the proxy host can burst into; the agent's providers add "guest".
Cloud = Literal["ec2", "openstack"]
BACKENDS: Final[Mapping[str, str]] = {  # one per Cloud (tests/test_facts.py)
    "ec2": "azfed.clouds.ec2:Ec2Backend",
    "openstack": "azfed.clouds.openstack:OpenStackBackend",
}


class RemoteState(str, enum.Enum):
    """A remote instance's state, in the words both providers share: the wire's `State`s
    but "shutting-down", which the backends call TERMINATED (the driver treats it as gone)."""

    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    TERMINATED = "terminated"
    ERROR = "error"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class NetworkAttachment:
    """A burst instance's Neutron port in the provider's terms: the port's fixed IP, the
    provider subnet its Neutron subnet mirrors, the groups mirrored from its security groups
    (azfed.neutron)."""

    port_id: str
    private_ip: str
    subnet_id: str
    security_group_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class SpawnRequest:
    """What the proxy host asks a backend to create, already mapped to provider terms.

    `instance_type` is the provider's type or flavor name, `image` an AMI id or a public
    image name; `user_data` is the plain content (the backend encodes it as its API wants).
    `name` is the display name; `instance_name` is Nova's `instance.name`. `project_id` is
    None for an instance made outside any project (Nova's admin context in its own tests).
    """

    instance_uuid: str
    project_id: str | None
    name: str
    instance_type: str
    image: str
    user_data: str | bytes | None = None
    instance_name: str | None = None
    extra_tags: dict[str, str] = field(default_factory=dict)
    # None: no Neutron port (`networks=none`), the backend's configured subnet and groups
    network: NetworkAttachment | None = None

    def labels(self) -> dict[str, str]:
        """The tags (EC2) or metadata (OpenStack) every backend puts on what it creates.

        A value that is unknown is left out rather than sent empty or as None: EC2 refuses a
        None tag value before the request leaves the host.
        """
        known = {
            UUID_TAG: self.instance_uuid,
            PROJECT_TAG: self.project_id,
            NAME_TAG: self.instance_name,
        }
        return {**{k: v for k, v in known.items() if v}, **self.extra_tags}


@dataclass(frozen=True)
class RemoteInstance:
    """One instance in the public cloud, as its provider describes it."""

    remote_id: str
    instance_uuid: str | None
    state: RemoteState
    instance_type: str
    image: str | None = None
    private_ip: str | None = None
    public_ip: str | None = None
    zone: str | None = None
    subnet_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    can_hibernate: bool = False  # launched with hibernation configured (EC2)

    @property
    def instance_name(self) -> str | None:
        """Nova's `instance.name`, from the label the proxy host wrote at spawn (if it did)."""
        return self.tags.get(NAME_TAG)


class CloudUnavailableError(CloudError):
    """The provider's endpoint did not answer (connection refused, timed out): try again."""


class HibernationUnsupported(PermanentError):
    """The instance cannot hibernate (it was launched without it, or the provider has none):
    stop it instead."""


class CloudBackend(Protocol):
    """The lifecycle of burst instances on one public cloud.

    Every method is idempotent and safe to retry: `spawn` with a UUID that already has a live
    instance returns that instance instead of creating a second one; stopping a stopped or
    terminating a gone instance succeeds. Methods raise only `azfed.errors.CloudError`
    subclasses. `create_image` labels the image with `labels` and returns its id only once it
    is usable (bounded wait); on any failure, cancellation included, it leaves no image
    behind. `hibernate` raises `HibernationUnsupported` for an instance launched without
    hibernation. `close()` is called once, after every other call has returned.
    """

    provider: str

    async def spawn(self, request: SpawnRequest) -> RemoteInstance: ...
    async def find(self, instance_uuid: str) -> RemoteInstance | None: ...
    async def find_gone(self, instance_uuid: str) -> RemoteInstance | None: ...
    async def describe(self, remote_id: str) -> RemoteInstance: ...
    async def list_all(self) -> list[RemoteInstance]: ...
    async def stop(self, remote_id: str) -> None: ...
    async def start(self, remote_id: str) -> None: ...
    async def reboot(self, remote_id: str) -> None: ...
    async def terminate(self, remote_id: str) -> None: ...
    async def resize(self, remote_id: str, instance_type: str) -> None: ...
    async def console_output(self, remote_id: str) -> str: ...
    async def create_image(
        self, remote_id: str, name: str, description: str, labels: Mapping[str, str]
    ) -> str: ...
    async def delete_image(self, image_id: str) -> None: ...
    async def hibernate(self, remote_id: str) -> None: ...
    async def close(self) -> None: ...


# Nova's server `status` (what its API shows; nova/api/openstack/common.py) -> the wire's
# instance state, for the servers of a public OpenStack: the backend and the agent's collector
# both describe them with this map. RESIZE and REVERT_RESIZE are "pending", not "running": Nova
# shows them for a stopped server too, and mid-resize the guest is powered off and rebuilt on
# its new flavor, so neither "running" nor "stopped" is true until VERIFY_RESIZE (or ACTIVE /
# SHUTOFF after a revert). MIGRATING is a live migration: the guest keeps running.
NOVA_STATUS_STATES: Final[Mapping[str, State]] = {
    "BUILD": "pending",
    "REBUILD": "pending",
    "RESIZE": "pending",
    "REVERT_RESIZE": "pending",
    "ACTIVE": "running",
    "REBOOT": "running",
    "HARD_REBOOT": "running",
    "PASSWORD": "running",
    "RESCUE": "running",
    "MIGRATING": "running",
    "VERIFY_RESIZE": "running",
    "SHUTOFF": "stopped",
    "SUSPENDED": "stopped",
    "PAUSED": "stopped",
    "SHELVED": "stopped",
    "SHELVED_OFFLOADED": "stopped",
    "DELETED": "terminated",
    "SOFT_DELETED": "terminated",
    "ERROR": "error",
}


def backend_class(name: str) -> type[Any]:
    """Import and return the backend class registered as `name`."""
    try:
        target = BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ValueError(f"unknown cloud backend {name!r} (known: {known})") from None
    module, _, attr = target.partition(":")
    cls: type[Any] = getattr(importlib.import_module(module), attr)
    return cls

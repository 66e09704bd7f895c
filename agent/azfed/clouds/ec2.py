"""The EC2 backend: burst instances in one VPC subnet, through aioboto3.

Two retry layers, on purpose. botocore's "standard" mode retries transient and throttling
errors inside one call with its own backoff and retry quota; `total_max_attempts` bounds it.
Above that, lifecycle calls that AWS still throttles are retried by tenacity with full-jitter
backoff: they are idempotent (RunInstances carries ClientToken = the Nova UUID, the others act
on one instance id), so a repeat is harmless.

moto does not implement ClientToken, and a ClientToken is only remembered by AWS for a while,
so `spawn` also looks for a live instance tagged with the UUID before it creates one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aioboto3
import structlog
from azfed.aws import AWS_CLIENT_DEFAULTS, THROTTLE_CODES, AwsClient
from azfed.clouds import (
    UUID_TAG,
    CloudUnavailableError,
    HibernationUnsupported,
    RemoteInstance,
    RemoteState,
    SpawnRequest,
)
from azfed.errors import (
    CapacityError,
    CloudError,
    NotFoundError,
    PermanentError,
    QuotaError,
    ThrottledError,
)
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, WaiterError
from botocore.exceptions import ConnectionError as BotoConnectionError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

log = structlog.get_logger(__name__)

CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientHostCapacity",
        "InsufficientCapacity",
        "InsufficientReservedInstanceCapacity",
    }
)
QUOTA_CODES = frozenset(
    {
        "InstanceLimitExceeded",
        "VcpuLimitExceeded",
        "MaxSpotInstanceCountExceeded",
        "InsufficientFreeAddressesInSubnet",
    }
)
NOT_FOUND_CODES = frozenset({"InvalidInstanceID.NotFound"})
# an AMI already deregistered, for DeregisterImage (for RunInstances a bad AMI is permanent)
GONE_IMAGE_CODES = frozenset({"InvalidAMIID.NotFound", "InvalidAMIID.Unavailable"})

LIVE_STATES = ("pending", "running", "stopping", "stopped")
_STATES = {
    "pending": RemoteState.PENDING,
    "running": RemoteState.RUNNING,
    "stopping": RemoteState.STOPPING,
    "stopped": RemoteState.STOPPED,
    "shutting-down": RemoteState.TERMINATED,
    "terminated": RemoteState.TERMINATED,
}


@dataclass(frozen=True)
class Ec2Settings:
    """Where burst instances go and how hard to try. Built from nova.conf `[azfed]`."""

    region: str
    subnet_id: str | None = None
    security_group_ids: tuple[str, ...] = ()
    key_name: str | None = None
    endpoint_url: str | None = None
    connect_timeout_s: float = AWS_CLIENT_DEFAULTS.connect_timeout_s
    read_timeout_s: float = AWS_CLIENT_DEFAULTS.read_timeout_s
    max_attempts: int = AWS_CLIENT_DEFAULTS.max_attempts
    throttle_retries: int = 3
    throttle_backoff_s: float = 1.0
    wait_delay_s: float = 5.0
    wait_attempts: int = 60
    # an AMI of a large root volume takes many minutes: its own bound, at wait_delay_s apart
    image_wait_attempts: int = 360


def map_error(err: ClientError, action: str, subject: str) -> CloudError:
    """Turn an EC2 error into azfed's hierarchy, with a message an operator can act on."""
    info = err.response.get("Error", {})
    code = str(info.get("Code", "Unknown"))
    msg = str(info.get("Message", ""))
    kw = {"provider": "ec2", "code": code}
    if code in CAPACITY_CODES:
        return CapacityError(f"AWS has no capacity for {subject}: {msg}", **kw)
    if code in QUOTA_CODES:
        return QuotaError(
            f"AWS account limit reached for {subject} ({code}): {msg}; "
            "raise the limit in Service Quotas or free instances",
            **kw,
        )
    if code in THROTTLE_CODES:
        return ThrottledError(f"AWS throttled {action} ({code}) after retries: {msg}", **kw)
    if code in NOT_FOUND_CODES:
        return NotFoundError(f"AWS {action}: {subject} not found: {msg}", **kw)
    return PermanentError(f"AWS refused {action} for {subject} ({code}): {msg}", **kw)


# What botocore raises when AWS did not answer: no connection, a timeout, a dropped connection.
# Every other BotoCoreError happened on this host before anything was sent (a parameter that
# fails validation, no credentials, no region) and repeating the call cannot help.
UNANSWERED = (BotoConnectionError, HTTPClientError)


def map_botocore_error(err: BotoCoreError, action: str, subject: str) -> CloudError:
    """A botocore error (no AWS answer in it) onto azfed's hierarchy."""
    kw = {"provider": "ec2", "code": type(err).__name__}
    if isinstance(err, UNANSWERED):
        return CloudUnavailableError(f"AWS {action} did not answer: {err}", **kw)
    return PermanentError(
        f"AWS {action} for {subject} was not sent: {err}; this is a bug in the request or in "
        "this host's AWS set-up (credentials, region), not in AWS",
        **kw,
    )


def _tag_list(labels: Mapping[str, str], **more: str) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in {**labels, **more}.items()]


def _tags(raw: list[Mapping[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in raw or ()}


def to_remote(raw: Mapping[str, Any]) -> RemoteInstance:
    """One DescribeInstances item as a RemoteInstance."""
    tags = _tags(raw.get("Tags"))
    return RemoteInstance(
        remote_id=raw["InstanceId"],
        instance_uuid=tags.get(UUID_TAG),
        state=_STATES.get(raw.get("State", {}).get("Name", ""), RemoteState.UNKNOWN),
        instance_type=raw.get("InstanceType", ""),
        image=raw.get("ImageId"),
        private_ip=raw.get("PrivateIpAddress"),
        public_ip=raw.get("PublicIpAddress"),
        zone=raw.get("Placement", {}).get("AvailabilityZone"),
        subnet_id=raw.get("SubnetId"),
        tags=tags,
        can_hibernate=bool(raw.get("HibernationOptions", {}).get("Configured")),
    )


class Ec2Backend:
    """CloudBackend for AWS EC2 (and moto). One client, created on first use in the loop."""

    provider = "ec2"

    def __init__(self, settings: Ec2Settings, session: aioboto3.Session | None = None) -> None:
        self.settings = settings
        self._session = session or aioboto3.Session()
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._zone: str | None = None

    # --- plumbing ------------------------------------------------------------------------------

    def _botocore_config(self) -> Config:
        s = self.settings
        return Config(
            **AwsClient(s.connect_timeout_s, s.read_timeout_s, s.max_attempts).botocore_kwargs()
        )

    async def _ec2(self) -> Any:
        if self._client is None:
            cm = self._session.client(
                "ec2",
                region_name=self.settings.region,
                endpoint_url=self.settings.endpoint_url,
                config=self._botocore_config(),
            )
            self._client = await self._stack.enter_async_context(cm)
        return self._client

    async def _call(self, action: str, subject: str, **params: Any) -> dict[str, Any]:
        """One EC2 API call, errors mapped, throttling retried beyond botocore's own retries."""
        s = self.settings
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(ThrottledError),
            stop=stop_after_attempt(s.throttle_retries + 1),
            wait=wait_random_exponential(multiplier=s.throttle_backoff_s, max=30),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._call_once(action, subject, params)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _call_once(self, action: str, subject: str, params: dict[str, Any]) -> dict[str, Any]:
        client = await self._ec2()
        try:
            out: dict[str, Any] = await getattr(client, action)(**params)
        except ClientError as err:
            mapped = map_error(err, action, subject)
            log.warning("ec2.call_failed", action=action, code=mapped.code, subject=subject)
            raise mapped from err
        except BotoCoreError as err:
            mapped = map_botocore_error(err, action, subject)
            log.warning("ec2.call_failed", action=action, code=mapped.code, subject=subject)
            raise mapped from err
        return out

    async def _wait(self, waiter_name: str, remote_id: str, attempts: int | None = None) -> None:
        client = await self._ec2()
        config = {
            "Delay": self.settings.wait_delay_s,
            "MaxAttempts": attempts or self.settings.wait_attempts,
        }
        ids = {"ImageIds" if remote_id.startswith("ami-") else "InstanceIds": [remote_id]}
        try:
            await client.get_waiter(waiter_name).wait(**ids, WaiterConfig=config)
        except WaiterError as err:
            raise PermanentError(
                f"AWS resource {remote_id} did not reach the expected state "
                f"({waiter_name}): {err.kwargs.get('reason', err)}",
                provider="ec2",
                code="WaiterError",
            ) from err
        except BotoCoreError as err:
            raise map_botocore_error(err, waiter_name, remote_id) from err

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    # --- reads ---------------------------------------------------------------------------------

    async def describe(self, remote_id: str) -> RemoteInstance:
        out = await self._call("describe_instances", remote_id, InstanceIds=[remote_id])
        for reservation in out.get("Reservations", ()):
            for raw in reservation.get("Instances", ()):
                return to_remote(raw)
        raise NotFoundError(f"AWS has no instance {remote_id}", provider="ec2")

    async def _describe_filtered(self, filters: list[dict[str, Any]]) -> list[RemoteInstance]:
        found: list[RemoteInstance] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"Filters": filters, "MaxResults": 1000}
            if token:
                params["NextToken"] = token
            out = await self._call("describe_instances", "tagged instances", **params)
            for reservation in out.get("Reservations", ()):
                found.extend(to_remote(raw) for raw in reservation.get("Instances", ()))
            token = out.get("NextToken")
            if not token:
                return found

    async def find(self, instance_uuid: str) -> RemoteInstance | None:
        """The live instance tagged with this Nova UUID, if any."""
        live = await self._describe_filtered(
            [
                {"Name": f"tag:{UUID_TAG}", "Values": [instance_uuid]},
                {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
            ]
        )
        return live[0] if live else None

    async def find_gone(self, instance_uuid: str) -> RemoteInstance | None:
        """A terminated instance tagged with this Nova UUID (AWS lists one for about an hour)."""
        gone = await self._terminated(instance_uuid)
        return gone[0] if gone else None

    async def _terminated(self, instance_uuid: str) -> list[RemoteInstance]:
        return await self._describe_filtered(
            [
                {"Name": f"tag:{UUID_TAG}", "Values": [instance_uuid]},
                {"Name": "instance-state-name", "Values": ["shutting-down", "terminated"]},
            ]
        )

    async def list_all(self) -> list[RemoteInstance]:
        """Every live instance azfed created (those carrying the UUID tag)."""
        return await self._describe_filtered(
            [
                {"Name": "tag-key", "Values": [UUID_TAG]},
                {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
            ]
        )

    async def subnet_zone(self) -> str:
        """The availability zone of the configured subnet (or the region without one)."""
        if self._zone is None:
            sid = self.settings.subnet_id
            if sid is None:
                self._zone = self.settings.region
            else:
                out = await self._call("describe_subnets", sid, SubnetIds=[sid])
                self._zone = str(out["Subnets"][0]["AvailabilityZone"])
        return self._zone

    async def console_output(self, remote_id: str) -> str:
        out = await self._call("get_console_output", remote_id, InstanceId=remote_id)
        return str(out.get("Output") or "")

    # --- spawn ---------------------------------------------------------------------------------

    def run_params(self, req: SpawnRequest) -> dict[str, Any]:
        """RunInstances parameters for one burst instance."""
        s = self.settings
        labels = {**req.labels(), "Name": req.name}
        tags = [{"Key": k, "Value": v} for k, v in labels.items()]
        params: dict[str, Any] = {
            "ImageId": req.image,
            "InstanceType": req.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "ClientToken": req.instance_uuid,
            # IMDSv2 only: a token is required, so SSRF through the guest cannot read the role
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tags},
                {"ResourceType": "volume", "Tags": tags},
            ],
        }
        params.update(self._placement(req))
        if s.key_name:
            params["KeyName"] = s.key_name
        if req.user_data:
            params["UserData"] = req.user_data  # botocore base64-encodes it
        return params

    def _placement(self, req: SpawnRequest) -> dict[str, Any]:
        """Where the instance goes: its Neutron port's address, subnet and mirrored groups,
        or (without a port) the configured subnet and groups."""
        s, net = self.settings, req.network
        if net is not None:
            placed: dict[str, Any] = {"SubnetId": net.subnet_id, "PrivateIpAddress": net.private_ip}
            if net.security_group_ids:
                placed["SecurityGroupIds"] = list(net.security_group_ids)
            return placed
        placed = {"SubnetId": s.subnet_id} if s.subnet_id else {}
        if s.security_group_ids:
            placed["SecurityGroupIds"] = list(s.security_group_ids)
        return placed

    async def _client_token(self, request: SpawnRequest) -> str:
        """The Nova UUID; for a relaunch under the same UUID (Nova's rebuild: destroy, then
        spawn) the UUID and the terminated predecessor's id. AWS answers a repeated
        ClientToken with the launch it first made (for at least a day after that instance is
        terminated), so a relaunch under the UUID alone would get the terminated instance back.
        Taken from what AWS lists, so a retried relaunch sends the same token (the highest id
        of several predecessors, to be deterministic)."""
        gone = await self._terminated(request.instance_uuid)
        if not gone:
            return request.instance_uuid
        return f"{request.instance_uuid}-{max(g.remote_id for g in gone)}"

    async def spawn(self, request: SpawnRequest) -> RemoteInstance:
        """Create (or adopt) the instance for this Nova UUID and wait until it runs.

        If it was created here and does not reach `running`, it is terminated before the
        error propagates: a failed burst leaves nothing behind in the account.
        """
        existing = await self.find(request.instance_uuid)
        if existing is not None:
            log.info(
                "ec2.spawn_adopted", instance_uuid=request.instance_uuid, id=existing.remote_id
            )
            if existing.state is not RemoteState.RUNNING:
                await self._wait("instance_running", existing.remote_id)
            return await self.describe(existing.remote_id)
        subject = f"{request.instance_type} in {await self.subnet_zone()}"
        params = {**self.run_params(request), "ClientToken": await self._client_token(request)}
        out = await self._call("run_instances", subject, **params)
        remote_id = out["Instances"][0]["InstanceId"]
        log.info("ec2.spawned", instance_uuid=request.instance_uuid, id=remote_id)
        try:
            await self._wait("instance_running", remote_id)
            return await self.describe(remote_id)
        except BaseException:
            # shielded: a cancelled spawn must still not leave a running instance behind
            await asyncio.shield(self.terminate_quietly(remote_id))
            raise

    # --- lifecycle -----------------------------------------------------------------------------

    async def stop(self, remote_id: str) -> None:
        await self._call("stop_instances", remote_id, InstanceIds=[remote_id])
        await self._wait("instance_stopped", remote_id)

    async def start(self, remote_id: str) -> None:
        await self._call("start_instances", remote_id, InstanceIds=[remote_id])
        await self._wait("instance_running", remote_id)

    async def reboot(self, remote_id: str) -> None:
        await self._call("reboot_instances", remote_id, InstanceIds=[remote_id])

    async def terminate(self, remote_id: str) -> None:
        """Terminate and wait until AWS says terminated; an instance already gone is fine."""
        try:
            await self._call("terminate_instances", remote_id, InstanceIds=[remote_id])
        except NotFoundError:
            return
        await self._wait("instance_terminated", remote_id)

    async def terminate_quietly(self, remote_id: str) -> None:
        """Best-effort cleanup on a failure path: log, never mask the original error."""
        try:
            await self.terminate(remote_id)
        except CloudError:
            log.exception("ec2.cleanup_failed", id=remote_id)

    async def resize(self, remote_id: str, instance_type: str) -> None:
        """Change the instance type: EC2 needs the instance stopped; restart it if it ran."""
        current = await self.describe(remote_id)
        if current.instance_type == instance_type:
            return
        was_running = current.state in (RemoteState.RUNNING, RemoteState.PENDING)
        if current.state is not RemoteState.STOPPED:
            await self.stop(remote_id)
        await self._call(
            "modify_instance_attribute",
            f"{instance_type} for {remote_id}",
            InstanceId=remote_id,
            InstanceType={"Value": instance_type},
        )
        if was_running:
            await self.start(remote_id)

    async def hibernate(self, remote_id: str) -> None:
        """Stop with hibernation (RAM saved to the root volume); `start` resumes it."""
        current = await self.describe(remote_id)
        if not current.can_hibernate:
            raise HibernationUnsupported(
                f"AWS instance {remote_id} was launched without hibernation "
                "(HibernationOptions.Configured is false): stop it instead",
                provider="ec2",
                code="HibernationNotConfigured",
            )
        await self._call("stop_instances", remote_id, InstanceIds=[remote_id], Hibernate=True)
        await self._wait("instance_stopped", remote_id)

    # --- images --------------------------------------------------------------------------------

    async def create_image(
        self, remote_id: str, name: str, description: str, labels: Mapping[str, str]
    ) -> str:
        """An AMI of the instance, once `available`; deregistered if it never gets there.

        NoReboot: Nova's snapshot of a running server does not reboot it (libvirt's is a live,
        crash-consistent snapshot), and a user asking for an image does not expect an outage.
        """
        out = await self._call(
            "create_image",
            remote_id,
            InstanceId=remote_id,
            Name=name,
            Description=description[:255],
            NoReboot=True,
            # the UUID tag lets the driver's IAM policy deregister azfed's AMIs and no other
            TagSpecifications=[{"ResourceType": "image", "Tags": _tag_list(labels, Name=name)}],
        )
        image_id = str(out["ImageId"])
        log.info("ec2.image_created", id=remote_id, image=image_id)
        try:
            await self._wait("image_available", image_id, self.settings.image_wait_attempts)
        except BaseException:
            # shielded: a cancelled snapshot must still not leave a half-made AMI behind
            await asyncio.shield(self.delete_image_quietly(image_id))
            raise
        return image_id

    async def delete_image(self, image_id: str) -> None:
        """Deregister the AMI and delete its EBS snapshots (DeregisterImage keeps them, and
        they are billed); an AMI already gone is fine."""
        try:
            out = await self._call("describe_images", image_id, ImageIds=[image_id])
            await self._call("deregister_image", image_id, ImageId=image_id)
        except PermanentError as err:
            if err.code in GONE_IMAGE_CODES:
                return
            raise
        for image in out.get("Images", ()):
            for mapping in image.get("BlockDeviceMappings", ()):
                snapshot = mapping.get("Ebs", {}).get("SnapshotId")
                if snapshot:
                    await self._call("delete_snapshot", snapshot, SnapshotId=snapshot)

    async def delete_image_quietly(self, image_id: str) -> None:
        """Best-effort cleanup on a failure path: log, never mask the original error."""
        try:
            await self.delete_image(image_id)
        except CloudError:
            log.exception("ec2.image_cleanup_failed", image=image_id)

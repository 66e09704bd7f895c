"""The EC2 backend against moto's server over HTTP, with real EC2 error bodies injected."""

from __future__ import annotations

import uuid
from typing import Any, cast

import pytest
from azfed.clouds import (
    NAME_TAG,
    PROJECT_TAG,
    UUID_TAG,
    CloudUnavailableError,
    RemoteState,
    SpawnRequest,
)
from azfed.clouds.ec2 import Ec2Backend
from azfed.errors import (
    CapacityError,
    NotFoundError,
    PermanentError,
    QuotaError,
    ThrottledError,
)

from testbed.aws import MotoServer
from tests.clouds.conftest import Network, settings_for


def request(net: Network, itype: str = "t3.micro", **kw: Any) -> SpawnRequest:
    base: dict[str, Any] = {
        "instance_uuid": str(uuid.uuid4()),
        "project_id": "p-" + uuid.uuid4().hex[:8],
        "name": "burst-vm",
        "instance_type": itype,
        "image": net.ami,
        "user_data": "#cloud-config\nruncmd: [echo hi]\n",
    }
    base.update(kw)
    return SpawnRequest(**base)


async def tagged(client: Any, instance_uuid: str) -> list[dict[str, Any]]:
    """Every instance (any state but terminated) carrying this Nova UUID, as AWS shows it."""
    out = await client.describe_instances(
        Filters=[
            {"Name": f"tag:{UUID_TAG}", "Values": [instance_uuid]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]},
        ]
    )
    return [i for r in out["Reservations"] for i in r["Instances"]]


async def test_spawn_creates_one_tagged_imdsv2_instance_in_the_subnet(
    backend: Ec2Backend, network: Network, ec2_client: Any
) -> None:
    req = request(network)
    got = await backend.spawn(req)

    [raw] = await tagged(ec2_client, req.instance_uuid)
    assert raw["InstanceId"] == got.remote_id
    assert got.state is RemoteState.RUNNING
    assert (raw["InstanceType"], raw["ImageId"]) == ("t3.micro", network.ami)
    assert (raw["SubnetId"], raw["VpcId"]) == (network.subnet_id, network.vpc_id)
    assert [g["GroupId"] for g in raw["SecurityGroups"]] == [network.sg_id]
    assert raw["KeyName"] == network.key_name
    assert raw["MetadataOptions"]["HttpTokens"] == "required"
    tags = {t["Key"]: t["Value"] for t in raw["Tags"]}
    assert tags[UUID_TAG] == req.instance_uuid
    assert tags[PROJECT_TAG] == req.project_id
    assert tags["Name"] == "burst-vm"
    assert got.private_ip == raw["PrivateIpAddress"]
    attr = await ec2_client.describe_instance_attribute(
        InstanceId=got.remote_id, Attribute="userData"
    )
    import base64

    assert base64.b64decode(attr["UserData"]["Value"]).decode() == req.user_data


async def test_a_repeated_spawn_with_the_same_uuid_never_makes_a_second_instance(
    backend: Ec2Backend, network: Network, ec2_client: Any, moto: MotoServer
) -> None:
    req = request(network)
    first = await backend.spawn(req)
    runs_before = moto.stats()["hits"].get("RunInstances", 0)

    again = await backend.spawn(req)

    assert again.remote_id == first.remote_id
    assert len(await tagged(ec2_client, req.instance_uuid)) == 1
    assert moto.stats()["hits"].get("RunInstances", 0) == runs_before


async def test_stop_start_reboot_resize_and_terminate_are_mirrored_on_ec2(
    backend: Ec2Backend, network: Network, ec2_client: Any
) -> None:
    req = request(network)
    vm = await backend.spawn(req)

    await backend.stop(vm.remote_id)
    assert (await backend.describe(vm.remote_id)).state is RemoteState.STOPPED
    await backend.start(vm.remote_id)
    assert (await backend.describe(vm.remote_id)).state is RemoteState.RUNNING
    await backend.reboot(vm.remote_id)
    assert (await backend.describe(vm.remote_id)).state is RemoteState.RUNNING

    await backend.resize(vm.remote_id, "t3.small")
    resized = await backend.describe(vm.remote_id)
    assert (resized.instance_type, resized.state) == ("t3.small", RemoteState.RUNNING)

    assert isinstance(await backend.console_output(vm.remote_id), str)
    assert [r.remote_id for r in await backend.list_all() if r.instance_uuid == req.instance_uuid]

    await backend.terminate(vm.remote_id)
    assert (await backend.describe(vm.remote_id)).state is RemoteState.TERMINATED
    assert await backend.find(req.instance_uuid) is None
    await backend.terminate(vm.remote_id)  # terminating twice is fine


async def test_resizing_a_stopped_instance_leaves_it_stopped(
    backend: Ec2Backend, network: Network
) -> None:
    vm = await backend.spawn(request(network))
    await backend.stop(vm.remote_id)

    await backend.resize(vm.remote_id, "t3.medium")

    got = await backend.describe(vm.remote_id)
    assert (got.instance_type, got.state) == ("t3.medium", RemoteState.STOPPED)


async def test_throttled_run_instances_is_retried_and_the_spawn_succeeds(
    backend: Ec2Backend, network: Network, ec2_client: Any, moto: MotoServer
) -> None:
    # 3 throttles: botocore's standard mode retries within the call (3 attempts), then our
    # tenacity layer makes one more call, which succeeds
    moto.fault("RunInstances", "RequestLimitExceeded", status=503, times=3)
    before = moto.stats()["hits"].get("RunInstances", 0)
    req = request(network)

    vm = await backend.spawn(req)

    assert vm.state is RemoteState.RUNNING
    assert moto.stats()["hits"]["RunInstances"] - before == 4
    assert len(await tagged(ec2_client, req.instance_uuid)) == 1


async def test_throttling_beyond_every_retry_raises_throttled_error(
    backend: Ec2Backend, network: Network, moto: MotoServer
) -> None:
    moto.fault("RunInstances", "RequestLimitExceeded", status=503, times=6)
    with pytest.raises(ThrottledError, match="RequestLimitExceeded"):
        await backend.spawn(request(network))


async def test_no_capacity_raises_capacity_error_in_operator_terms_and_leaves_nothing(
    backend: Ec2Backend, network: Network, ec2_client: Any, moto: MotoServer
) -> None:
    # AWS answers 500 for capacity: botocore retries it as transient, so every attempt fails
    moto.fault("RunInstances", "InsufficientInstanceCapacity", status=500, times=3)
    req = request(network, itype="m5.large")

    with pytest.raises(CapacityError) as caught:
        await backend.spawn(req)

    assert str(caught.value).startswith("AWS has no capacity for m5.large in us-east-1a")
    assert caught.value.code == "InsufficientInstanceCapacity"
    assert await tagged(ec2_client, req.instance_uuid) == []


async def test_an_instance_that_fails_after_creation_is_terminated_before_the_error(
    backend: Ec2Backend, network: Network, ec2_client: Any, moto: MotoServer
) -> None:
    # the first two DescribeInstances (the adoption lookup, the look for a terminated
    # predecessor for the ClientToken) pass; the wait for `running` fails
    moto.fault("DescribeInstances", None, times=2)
    moto.fault("DescribeInstances", "UnauthorizedOperation", status=403, times=1)
    req = request(network)

    with pytest.raises(PermanentError, match="did not reach"):
        await backend.spawn(req)

    assert await tagged(ec2_client, req.instance_uuid) == []


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("InstanceLimitExceeded", 400, QuotaError),
        ("VcpuLimitExceeded", 400, QuotaError),
        ("InvalidAMIID.NotFound", 400, PermanentError),
        ("InvalidSubnetID.NotFound", 400, PermanentError),
    ],
)
async def test_run_instances_errors_map_onto_the_hierarchy(
    backend: Ec2Backend,
    network: Network,
    moto: MotoServer,
    code: str,
    status: int,
    error: type[Exception],
) -> None:
    moto.fault("RunInstances", code, status=status, times=1)
    with pytest.raises(error, match=code):
        await backend.spawn(request(network))


async def test_an_unknown_instance_id_is_not_found(backend: Ec2Backend) -> None:
    with pytest.raises(NotFoundError):
        await backend.stop("i-0123456789abcdef0")


async def test_an_unreachable_endpoint_is_cloud_unavailable_not_a_refusal(
    moto: MotoServer, network: Network
) -> None:
    """No answer at all is CloudUnavailableError (try again), never PermanentError."""
    from azfed.clouds import CloudUnavailableError

    dead = settings_for(moto, network, endpoint_url="http://127.0.0.1:9", max_attempts=1)
    b = Ec2Backend(dead)
    try:
        with pytest.raises(CloudUnavailableError) as caught:
            await b.find(str(uuid.uuid4()))
    finally:
        await b.close()
    assert caught.value.provider == "ec2"
    assert "did not answer" in str(caught.value)


async def test_spawn_labels_nova_name_and_leaves_out_a_project_nova_did_not_give(
    backend: Ec2Backend, network: Network, ec2_client: Any
) -> None:
    """Nova's own tests boot without a project: the tag is left out, the spawn succeeds."""
    req = request(network, project_id=None, instance_name="instance-0000002a")
    got = await backend.spawn(req)

    [raw] = await tagged(ec2_client, req.instance_uuid)
    tags = {t["Key"]: t["Value"] for t in raw["Tags"]}
    assert PROJECT_TAG not in tags
    assert tags[NAME_TAG] == "instance-0000002a"
    assert got.instance_name == "instance-0000002a"
    listed = {r.instance_uuid: r.instance_name for r in await backend.list_all()}
    assert listed[req.instance_uuid] == "instance-0000002a"


async def test_a_request_botocore_refuses_before_sending_is_permanent_not_unavailable(
    backend: Ec2Backend, moto: MotoServer
) -> None:
    """botocore's own ParamValidationError: nothing reached AWS, and a retry cannot help."""
    before = moto.stats()["hits"].get("DescribeInstances", 0)
    with pytest.raises(PermanentError) as caught:
        await backend.describe(cast(str, None))
    assert not isinstance(caught.value, CloudUnavailableError)
    assert caught.value.code == "ParamValidationError"
    assert "was not sent" in str(caught.value)
    assert moto.stats()["hits"].get("DescribeInstances", 0) == before


async def test_an_answer_later_than_the_read_timeout_is_cloud_unavailable(
    moto: MotoServer, network: Network
) -> None:
    slow = settings_for(moto, network, read_timeout_s=0.3, max_attempts=1)
    b = Ec2Backend(slow)
    moto.fault("DescribeInstances", None, delay_s=1.5, times=1)
    try:
        with pytest.raises(CloudUnavailableError) as caught:
            await b.find(str(uuid.uuid4()))
    finally:
        await b.close()
    assert caught.value.code == "ReadTimeoutError"
    assert "did not answer" in str(caught.value)

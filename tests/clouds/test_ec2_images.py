"""The EC2 backend's snapshot (CreateImage), image cleanup, hibernation and terminated lookup,
against moto's server over HTTP with real EC2 error bodies injected."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azfed.clouds import UUID_TAG, HibernationUnsupported, RemoteState
from azfed.clouds.ec2 import Ec2Backend
from azfed.errors import PermanentError

from testbed.aws import MotoServer
from tests.clouds.conftest import Network
from tests.clouds.test_ec2 import request


async def _own_images(client: Any) -> set[str]:
    out = await client.describe_images(Owners=["self"])
    return {i["ImageId"] for i in out["Images"]}


async def test_create_image_returns_an_available_ami_of_the_instance(
    backend: Ec2Backend, network: Network, ec2_client: Any
) -> None:
    vm = await backend.spawn(request(network))
    name = f"azfed-{uuid.uuid4()}"

    ami = await backend.create_image(vm.remote_id, name, "my snapshot", {UUID_TAG: "u-1"})

    [image] = (await ec2_client.describe_images(ImageIds=[ami]))["Images"]
    assert (image["State"], image["Name"], image["Description"]) == (
        "available",
        name,
        "my snapshot",
    )
    assert {t["Key"]: t["Value"] for t in image["Tags"]} == {UUID_TAG: "u-1", "Name": name}
    # the instance keeps running: NoReboot
    assert (await backend.describe(vm.remote_id)).state is RemoteState.RUNNING


async def test_an_image_that_never_becomes_available_is_deregistered_before_the_error(
    backend: Ec2Backend, network: Network, ec2_client: Any, moto: MotoServer
) -> None:
    """The wait for `available` fails (AWS refuses DescribeImages once): no AMI is left."""
    vm = await backend.spawn(request(network))
    before = await _own_images(ec2_client)
    moto.fault("DescribeImages", "UnauthorizedOperation", status=403, times=1)

    with pytest.raises(PermanentError, match="did not reach"):
        await backend.create_image(vm.remote_id, f"azfed-{uuid.uuid4()}", "fails", {})

    assert await _own_images(ec2_client) == before


async def test_a_refused_create_image_raises_in_operator_terms(
    backend: Ec2Backend, network: Network, ec2_client: Any, moto: MotoServer
) -> None:
    vm = await backend.spawn(request(network))
    before = await _own_images(ec2_client)
    moto.fault("CreateImage", "UnauthorizedOperation", status=403, times=1)

    with pytest.raises(PermanentError, match=r"AWS refused create_image .*UnauthorizedOperation"):
        await backend.create_image(vm.remote_id, f"azfed-{uuid.uuid4()}", "refused", {})

    assert await _own_images(ec2_client) == before


async def test_delete_image_deregisters_the_ami_and_deletes_its_snapshots(
    backend: Ec2Backend, network: Network, ec2_client: Any
) -> None:
    vm = await backend.spawn(request(network))
    ami = await backend.create_image(vm.remote_id, f"azfed-{uuid.uuid4()}", "to delete", {})
    [image] = (await ec2_client.describe_images(ImageIds=[ami]))["Images"]
    snapshots = [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if "Ebs" in m]

    await backend.delete_image(ami)
    await backend.delete_image(ami)  # already gone: fine

    assert snapshots  # moto gives the AMI the root volume's snapshot, as AWS does
    assert ami not in await _own_images(ec2_client)
    left = await ec2_client.describe_snapshots(OwnerIds=["self"])
    assert set(snapshots).isdisjoint(s["SnapshotId"] for s in left["Snapshots"])


async def test_hibernate_is_refused_for_an_instance_launched_without_it(
    backend: Ec2Backend, network: Network
) -> None:
    vm = await backend.spawn(request(network))

    with pytest.raises(HibernationUnsupported, match="launched without hibernation"):
        await backend.hibernate(vm.remote_id)

    assert (await backend.describe(vm.remote_id)).state is RemoteState.RUNNING


async def test_an_instance_launched_with_hibernation_hibernates_and_resumes(
    backend: Ec2Backend, network: Network, ec2_client: Any
) -> None:
    """What moto can show: HibernationOptions.Configured is read, StopInstances carries
    Hibernate=True (moto accepts it and stops the instance; it keeps no RAM, so the
    hibernation itself is AWS's to prove), start resumes it."""
    out = await ec2_client.run_instances(
        ImageId=network.ami,
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        SubnetId=network.subnet_id,
        HibernationOptions={"Configured": True},
    )
    remote_id = out["Instances"][0]["InstanceId"]
    assert (await backend.describe(remote_id)).can_hibernate

    await backend.hibernate(remote_id)
    assert (await backend.describe(remote_id)).state is RemoteState.STOPPED
    await backend.start(remote_id)
    assert (await backend.describe(remote_id)).state is RemoteState.RUNNING


async def test_find_gone_finds_a_terminated_instance_that_find_does_not(
    backend: Ec2Backend, network: Network
) -> None:
    req = request(network)
    vm = await backend.spawn(req)
    await backend.terminate(vm.remote_id)

    assert await backend.find(req.instance_uuid) is None
    gone = await backend.find_gone(req.instance_uuid)
    assert gone is not None
    assert (gone.remote_id, gone.state) == (vm.remote_id, RemoteState.TERMINATED)
    assert await backend.find_gone(str(uuid.uuid4())) is None


async def test_a_relaunch_under_the_same_uuid_gets_a_new_instance_and_its_own_client_token(
    backend: Ec2Backend, network: Network, ec2_client: Any
) -> None:
    """Nova's rebuild is destroy then spawn under the same UUID: AWS would answer the first
    launch's ClientToken with that (terminated) instance, so the relaunch sends its own."""
    req = request(network)
    first = await backend.spawn(req)
    await backend.terminate(first.remote_id)

    second = await backend.spawn(req)

    assert second.remote_id != first.remote_id
    assert second.state is RemoteState.RUNNING
    out = await ec2_client.describe_instances(InstanceIds=[first.remote_id, second.remote_id])
    tokens = {
        i["InstanceId"]: i.get("ClientToken") for r in out["Reservations"] for i in r["Instances"]
    }
    assert tokens == {
        first.remote_id: req.instance_uuid,
        second.remote_id: f"{req.instance_uuid}-{first.remote_id}",
    }

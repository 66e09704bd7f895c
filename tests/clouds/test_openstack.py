"""The public-OpenStack backend against the test bed's own Nova, used as the "public" cloud.

The backend works in a project of its own, created here, so its servers and quotas never mix
with the private cloud's. Servers land in `local-az` (the fake hypervisor): `aws-az` is the
proxy host, and a "public" server there would burst once more.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from azfed.clouds import PROJECT_TAG, UUID_TAG, RemoteState, SpawnRequest
from azfed.clouds.openstack import OpenStackBackend, OpenStackSettings, remote_name
from azfed.errors import NotFoundError, PermanentError, QuotaError

from testbed.openstack import AUTH, IMAGE, OpenStackBed


@pytest.fixture(scope="module")
def public_project(openstack_bed: OpenStackBed) -> Iterator[str]:
    """A project for the 'public' cloud's burst servers; deleted with what is left in it."""
    conn = openstack_bed.connect()
    name = f"azfed-public-{uuid.uuid4().hex[:8]}"
    project = conn.identity.create_project(name=name, domain_id="default")
    admin = conn.identity.find_user("admin")
    role = conn.identity.find_role("admin")
    conn.identity.assign_project_role_to_user(project, admin, role)
    yield name
    left = list(conn.compute.servers(all_projects=True, project_id=project.id))
    for server in left:
        conn.compute.delete_server(server)
    for server in left:
        conn.compute.wait_for_delete(server, wait=120)
    conn.identity.delete_project(project)
    conn.close()


def settings_for(project: str, **overrides: Any) -> OpenStackSettings:
    auth = {**AUTH, "project_name": project}
    base: dict[str, Any] = {
        "auth": auth,
        "availability_zone": "local-az",
        "concurrency": 2,
        "wait_s": 120.0,
        "retries": 1,
        "backoff_s": 0.1,
    }
    base.update(overrides)
    return OpenStackSettings(**base)


@pytest.fixture
async def backend(public_project: str) -> AsyncIterator[OpenStackBackend]:
    b = OpenStackBackend(settings_for(public_project))
    yield b
    for remote in await b.list_all():
        await b.terminate(remote.remote_id)
    await b.close()


def request(flavor: str = "m1.tiny", image: str = IMAGE) -> SpawnRequest:
    return SpawnRequest(
        instance_uuid=str(uuid.uuid4()),
        project_id="private-project",
        name="burst-vm",
        instance_type=flavor,
        image=image,
        user_data="#cloud-config\n",
    )


async def test_spawn_creates_one_active_server_labelled_with_the_nova_uuid(
    backend: OpenStackBackend, openstack_bed: OpenStackBed
) -> None:
    req = request()
    vm = await backend.spawn(req)

    assert vm.state is RemoteState.RUNNING
    assert (vm.instance_type, vm.zone) == ("m1.tiny", "local-az")
    conn = openstack_bed.connect()
    try:
        [server] = list(
            conn.compute.servers(all_projects=True, name=f"^{remote_name(req.instance_uuid)}$")
        )
    finally:
        conn.close()
    assert server.id == vm.remote_id
    assert server.metadata[UUID_TAG] == req.instance_uuid
    assert server.metadata[PROJECT_TAG] == "private-project"


async def test_a_repeated_spawn_with_the_same_uuid_adopts_the_first_server(
    backend: OpenStackBackend,
) -> None:
    req = request()
    first = await backend.spawn(req)
    again = await backend.spawn(req)

    assert again.remote_id == first.remote_id
    assert [r.remote_id for r in await backend.list_all()] == [first.remote_id]


async def test_stop_start_reboot_and_terminate_are_mirrored_on_the_public_cloud(
    backend: OpenStackBackend,
) -> None:
    req = request()
    vm = await backend.spawn(req)

    await backend.stop(vm.remote_id)
    assert (await backend.describe(vm.remote_id)).state is RemoteState.STOPPED
    await backend.stop(vm.remote_id)  # stopping a stopped server is fine
    await backend.start(vm.remote_id)
    assert (await backend.describe(vm.remote_id)).state is RemoteState.RUNNING
    await backend.reboot(vm.remote_id)
    assert (await backend.describe(vm.remote_id)).state is RemoteState.RUNNING
    assert isinstance(await backend.console_output(vm.remote_id), str)

    await backend.terminate(vm.remote_id)
    assert await backend.find(req.instance_uuid) is None
    with pytest.raises(NotFoundError):
        await backend.describe(vm.remote_id)
    await backend.terminate(vm.remote_id)  # and deleting twice too


async def test_an_unknown_flavor_is_a_permanent_error_naming_it_and_creates_nothing(
    backend: OpenStackBackend,
) -> None:
    with pytest.raises(PermanentError, match=r"m9\.huge"):
        await backend.spawn(request(flavor="m9.huge"))
    assert await backend.list_all() == []


async def test_the_public_project_quota_maps_to_quota_error(
    public_project: str, openstack_bed: OpenStackBed
) -> None:
    conn = openstack_bed.connect()
    project = conn.identity.find_project(public_project)
    conn.compute.update_quota_set(project.id, instances=0)
    b = OpenStackBackend(settings_for(public_project))
    try:
        with pytest.raises(QuotaError, match="quota"):
            await b.spawn(request())
        assert await b.list_all() == []
    finally:
        conn.compute.update_quota_set(project.id, instances=10)
        conn.close()
        await b.close()

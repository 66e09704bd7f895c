"""Shared fixtures: the real AWS stand-in (moto over HTTP) and the real OpenStack test bed.

Both are session-scoped (they take seconds to a minute to start) and reset or cleaned per test.
Tests that use them are marked automatically (`aws`, `openstack`), so the fast tests run alone
with `pytest -m "not aws and not openstack"` (`make test-fast`).

Set AZFED_TESTBED_REUSE=1 to use an OpenStack bed already started with
`python -m testbed start` and leave it running afterwards (quick iterations).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import structlog

from testbed.aws import FAKE_CREDENTIALS, MotoServer
from testbed.openstack import OpenStackBed

_MARK_BY_FIXTURE = {
    "moto": "aws",
    "aws": "aws",
    "openstack_bed": "openstack",
    "os_conn": "openstack",
}


def pytest_itemcollected(item: pytest.Item) -> None:
    names = set(getattr(item, "fixturenames", ()))
    for fixture, mark in _MARK_BY_FIXTURE.items():
        if fixture in names:
            item.add_marker(getattr(pytest.mark, mark))


@pytest.fixture(autouse=True)
def _structlog_as_found() -> Iterator[None]:
    """Each test leaves structlog as it found it: the CLI and the Nova adapter configure it
    process-wide, and a later test's capture_logs must still see every event."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


# --- AWS -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto's server behind the fault layer, on a port the OS chose, for the whole session.

    Its log is in this session's pytest temp folder: `make test` runs two sessions at once,
    and the bed's start empties .testbed/logs.
    """
    saved = {k: os.environ.get(k) for k in [*FAKE_CREDENTIALS, "AWS_PROFILE", "AWS_ENDPOINT_URL"]}
    # never let a test reach real AWS: fake credentials, no profile, every client to moto
    os.environ.update(FAKE_CREDENTIALS)
    os.environ.pop("AWS_PROFILE", None)
    with MotoServer(log_file=tmp_path_factory.getbasetemp() / "moto.log") as srv:
        os.environ["AWS_ENDPOINT_URL"] = srv.endpoint
        yield srv
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def aws(moto: MotoServer) -> MotoServer:
    """moto, emptied of every resource and fault rule before the test."""
    moto.reset()
    return moto


# --- OpenStack -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def openstack_bed(moto: MotoServer) -> Iterator[OpenStackBed]:
    """The real OpenStack test bed; its Nova services reach AWS at moto's endpoint."""
    if os.environ.get("AZFED_TESTBED_REUSE"):
        bed = OpenStackBed.attach()
        if bed is not None:
            yield bed
            return
    env = {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": moto.endpoint}
    bed = OpenStackBed(extra_env=env).start()
    try:
        yield bed
    finally:
        bed.stop()


@pytest.fixture
def os_conn(openstack_bed: OpenStackBed) -> Iterator[Any]:
    """An admin openstacksdk connection; the servers created through it are deleted afterwards.

    Only servers this connection created are touched, so tests sharing a running bed
    (AZFED_TESTBED_REUSE) never delete each other's servers.
    """
    conn = openstack_bed.connect()
    created: list[str] = []
    create = conn.compute.create_server

    def create_and_remember(**attrs: Any) -> Any:
        server = create(**attrs)
        created.append(server.id)
        return server

    conn.compute.create_server = create_and_remember
    yield conn
    for server_id in created:
        # not force=True: forceDelete is an action, and an action on a server the test
        # already deleted is a 404 that ignore_missing does not cover
        conn.compute.delete_server(server_id, ignore_missing=True)
    for server_id in created:
        server = conn.compute.find_server(server_id, all_projects=True)
        if server is not None:
            conn.compute.wait_for_delete(server, wait=120)
    conn.close()


@pytest.fixture
async def ec2(aws: MotoServer) -> AsyncIterator[Any]:
    """An aioboto3 EC2 client talking to moto over HTTP."""
    import aioboto3

    async with aioboto3.Session().client("ec2", **aws.client_kwargs()) as client:
        yield client


@pytest.fixture
async def cloudwatch(aws: MotoServer) -> AsyncIterator[Any]:
    import aioboto3

    async with aioboto3.Session().client("cloudwatch", **aws.client_kwargs()) as client:
        yield client

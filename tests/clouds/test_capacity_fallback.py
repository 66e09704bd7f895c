"""A launch that EC2 refuses for lack of capacity, a limit or throttling, through the proxy
host (ProxyHost over the real Ec2Backend, moto's server with its fault layer): the error is one
the driver reschedules on (errors.RESCHEDULABLE, so Nova tries the boot's next AZ), and no EC2
instance is left behind; a permanent error is not rescheduled."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azfed.clouds.ec2 import Ec2Backend
from azfed.errors import (
    RESCHEDULABLE,
    CapacityError,
    CloudError,
    PermanentError,
    QuotaError,
    ThrottledError,
)
from azfed.nova.proxy import ProxyHost, ProxySettings

from testbed.aws import MotoServer
from tests.clouds.conftest import Network, settings_for
from tests.clouds.test_ec2 import tagged


@pytest.fixture
def proxy(moto: MotoServer, network: Network) -> Iterator[ProxyHost]:
    settings = ProxySettings(
        provider="ec2", flavor_map={"m1.small": "m5.large"}, default_image=network.ami
    )
    host = ProxyHost(settings, Ec2Backend(settings_for(moto, network, throttle_retries=0)))
    yield host
    host.close()
    host.loop.loop.close()  # stopped and its thread joined by close(): the test owns the rest


def _spawn(proxy: ProxyHost) -> tuple[str, CloudError]:
    uid = str(uuid.uuid4())
    request = proxy.request_for(
        instance_uuid=uid,
        project_id="p1",
        name="burst-vm",
        flavor="m1.small",
        image_properties={},
        user_data=None,
    )
    with pytest.raises(CloudError) as caught:
        proxy.spawn(request)
    return uid, caught.value


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        # AWS answers 500 for capacity: botocore retries it, so every attempt must fail
        ("InsufficientInstanceCapacity", 500, CapacityError),
        ("InstanceLimitExceeded", 400, QuotaError),
        ("VcpuLimitExceeded", 400, QuotaError),
        ("RequestLimitExceeded", 503, ThrottledError),
    ],
)
async def test_no_capacity_a_limit_or_throttling_is_rescheduled_and_leaves_no_instance(
    proxy: ProxyHost,
    moto: MotoServer,
    ec2_client: Any,
    code: str,
    status: int,
    error: type[CloudError],
) -> None:
    moto.fault("RunInstances", code, status=status, times=None)
    try:
        uid, err = await asyncio.to_thread(_spawn, proxy)
    finally:
        moto.post("/_fault/clear")  # the rule has no count: every attempt fails until now
    assert type(err) is error
    assert err.code == code
    assert isinstance(err, RESCHEDULABLE)
    assert await tagged(ec2_client, uid) == []


async def test_a_permanent_error_is_not_rescheduled(
    proxy: ProxyHost, moto: MotoServer, ec2_client: Any
) -> None:
    moto.fault("RunInstances", "UnauthorizedOperation", status=403, times=1)
    uid, err = await asyncio.to_thread(_spawn, proxy)
    assert isinstance(err, PermanentError)
    assert not isinstance(err, RESCHEDULABLE)
    assert await tagged(ec2_client, uid) == []

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testbed.aws import MotoServer
from testbed.openstack import OpenStackBed
from tests.e2e.federation import Federation, federation_in


@pytest.fixture(scope="package")
def federation(openstack_bed: OpenStackBed, moto: MotoServer) -> Iterator[Federation]:
    """azfed switched on in the bed, once for the e2e tests (see federation.py): each module
    boots servers of its own, and leaves the proxy host as it found it."""
    yield from federation_in(openstack_bed, moto)

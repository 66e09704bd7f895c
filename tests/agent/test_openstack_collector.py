"""The public-OpenStack collector against the test bed's real Nova, used as the public cloud."""

from __future__ import annotations

import uuid
from typing import Any

from azfed.agent.collect.openstack import OpenStackCollector
from azfed.agent.health import AgentMetrics
from azfed.config import OpenStackSection

from testbed.openstack import IMAGE


def boot(conn: Any, name: str, metadata: dict[str, str]) -> Any:
    image = conn.image.find_image(IMAGE)
    flavor = conn.compute.find_flavor("m1.tiny")
    server = conn.compute.create_server(
        name=name, image_id=image.id, flavor_id=flavor.id, networks="none",
        availability_zone="local-az", metadata=metadata,
    )  # fmt: skip
    return conn.compute.wait_for_server(server, wait=120)


async def test_burst_servers_are_found_by_name_and_mapped_by_their_metadata_uuid(
    os_conn: Any,
) -> None:
    """A server named azfed-<uuid> with the UUID in its metadata is reported running under that
    UUID; a server with the prefix but no valid UUID is left out."""
    nova_uuid = str(uuid.uuid4())
    server = boot(os_conn, f"azfed-{nova_uuid}", {"azfed:instance-uuid": nova_uuid})
    stray = boot(os_conn, "azfed-stray", {})
    # the bed's admin connection instead of a clouds.yaml entry
    col = OpenStackCollector(OpenStackSection(cloud="unused"), AgentMetrics(), lambda: os_conn)
    obs = await col.collect()
    mine = [i for i in obs.instances if i.instance_uuid == nova_uuid]
    assert [(i.remote_id, i.state, i.provider) for i in mine] == [
        (server.id, "running", "openstack")
    ]
    assert stray.id not in {i.remote_id for i in obs.instances}
    assert mine[0].az == "local-az"
    assert mine[0].instance_type == "m1.tiny"

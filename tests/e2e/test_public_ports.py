"""Burst VMs of a public OpenStack on Neutron ports (issue 13 item 7), in the bed.

The bed is its own public OpenStack: its public project (`public` in the bed's
public-clouds.yaml) whose servers boot in aws-az. A new proxy host, compute-os in os-az, bursts
into it. Its network is the mirror of the federation's VPC subnet, the network test_ports uses.
That network is owned by the bed's operator and shared, and the public project may choose an
address on it, as an admin.

A server booted on the local mirror of that public subnet (`azfed network mirror --provider
openstack`) gets its address from the local Neutron. Its public server gets a public port
with the same address and the public copies of its security groups. In the bed that public
server is in turn a burst VM of compute-aws: the address goes on to its EC2 instance. Every
part is real: Nova, neutron-server with azfed's ML2 driver, and moto.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack
import pytest

from testbed.aws import FAKE_CREDENTIALS
from testbed.openstack import (
    AUTH,
    IMAGE,
    PUBLIC_AUTH,
    PUBLIC_CLOUD,
    PUBLIC_CLOUDS,
    PUBLIC_PROJECT,
    OpenStackBed,
)
from tests.e2e.federation import Federation, eventually

pytestmark = pytest.mark.e2e

HOST, AZ = "compute-os", "os-az"
# the public cloud's servers go to aws-az (its flavor m1.tiny is compute-aws's t3.micro)
PUBLIC_AZ = "aws-az"
GROUP_TAG = "azfed:neutron-security-group="


@pytest.fixture(scope="module")
def public(
    federation: Federation, openstack_bed: OpenStackBed, mirrored_network: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """compute-os bursting into the bed's public project, the policy told of os-az, the local
    mirror of the public subnet; all undone afterwards (the copies of groups go with the
    groups: the ML2 driver deletes a copy no port uses)."""
    conn = federation.conn
    project = conn.identity.find_project(PUBLIC_PROJECT, domain_id="default")
    policy_file = federation.demo.home / "policy.json"
    saved_policy = policy_file.read_text()
    openstack_bed.add_proxy_host(
        HOST,
        AZ,
        {
            "provider": "openstack",
            "cloud": PUBLIC_CLOUD,
            "public_az": PUBLIC_AZ,
            "flavor_map": "m1.tiny:m1.tiny,m1.small:m1.tiny",
            "default_image": IMAGE,
        },
    )
    # the filter re-reads the policy when it changes: no scheduler restart
    policy = json.loads(saved_policy)
    policy["public_azs"].append({**policy["public_azs"][0], "name": AZ, "priority": 2})
    policy_file.write_text(json.dumps(policy, indent=2) + "\n")
    public_conn = openstack.connect(**PUBLIC_AUTH)
    local_net = _mirror_cli(openstack_bed, mirrored_network["subnet_id"])
    try:
        yield {"project": project, "conn": public_conn, "local": local_net}
    finally:
        policy_file.write_text(saved_policy)
        for name in [n for n in federation.servers if n.startswith("pub-")]:
            server = federation.servers.pop(name)
            conn.compute.delete_server(server, ignore_missing=True)
            conn.compute.wait_for_delete(server, wait=180)
        openstack_bed.remove_proxy_host(HOST, AZ)
        # a port made before its server (`--nic port-id=`) outlives it
        for port in conn.network.ports(network_id=local_net["network_id"]):
            conn.network.delete_port(port)
        conn.network.delete_network(local_net["network_id"], ignore_missing=True)
        public_conn.close()


def _mirror_cli(bed: OpenStackBed, public_subnet: str) -> dict[str, Any]:
    """`azfed network mirror --provider openstack` as an operator runs it: the local cloud
    from OS_* variables, the public one from clouds.yaml (run twice: idempotent)."""
    env = {
        **os.environ,
        **FAKE_CREDENTIALS,
        "OS_CLIENT_CONFIG_FILE": str(bed.etc / PUBLIC_CLOUDS),
        **{f"OS_{k.upper()}": str(v) for k, v in AUTH.items()},
    }
    argv = [
        str(Path(sys.executable).parent / "azfed"),
        "network",
        "mirror",
        "--json",
        "--provider",
        "openstack",
        "--public-cloud",
        PUBLIC_CLOUD,
        "--subnet",
        public_subnet,
        "--name",
        f"azfed-os-{public_subnet[:8]}",
        "--availability-zone",
        AZ,
    ]
    runs = [
        subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=120)
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
    first, again = (json.loads(r.stdout) for r in runs)
    assert (first["created"], again["created"]) == (True, False)
    assert again["subnet_id"] == first["subnet_id"]
    return dict(first)


@pytest.fixture(scope="module")
def web_group(federation: Federation) -> Iterator[Any]:
    group = federation.ssh_group("e2e-pubweb")
    yield group
    federation.conn.network.delete_security_group(group, ignore_missing=True)


def _boot(federation: Federation, name: str, nic: dict[str, str], groups: list[str]) -> Any:
    """Boot on the local mirror, no AZ asked: the network's own AZ is where it must go."""
    return federation.create(name, networks=[nic], security_groups=[{"name": g} for g in groups])


@pytest.fixture(scope="module")
def burst(federation: Federation, public: dict[str, Any], web_group: Any) -> Any:
    server = _boot(
        federation, "pub-burst", {"uuid": public["local"]["network_id"]}, [web_group.name]
    )
    return federation.conn.compute.wait_for_server(
        server, status="ACTIVE", failures=["ERROR"], wait=300, interval=0.5
    )


def _public_server(public: dict[str, Any], server_id: str) -> Any | None:
    found = list(
        public["conn"].compute.servers(
            all_projects=True, project_id=public["project"].id, name=f"^azfed-{server_id}$"
        )
    )
    return found[0] if found else None


def _public_group(public: dict[str, Any], local_id: str) -> Any | None:
    found = list(public["conn"].network.security_groups(tags=GROUP_TAG + local_id))
    return found[0] if found else None


def _public_ingress(public: dict[str, Any], group_id: str) -> set[tuple[str, int, str]]:
    return {
        (r.protocol, r.port_range_min, r.remote_ip_prefix)
        for r in public["conn"].network.security_group_rules(security_group_id=group_id)
        if r.direction == "ingress"
    }


def test_public_server_keeps_the_local_address(
    federation: Federation, public: dict[str, Any], burst: Any, web_group: Any
) -> None:
    """Booted on the local mirror of the public subnet, the server lands in os-az with a port
    bound to compute-os. Its public server has a public port with the same address and the
    public copy of its group, and (the bed's public cloud bursting in turn) the EC2 instance
    behind that server has the address too. Nova and Neutron list it on both sides."""
    assert (burst.availability_zone, burst.compute_host) == (AZ, HOST)
    [port] = list(federation.conn.network.ports(device_id=burst.id))
    assert (port.binding_host_id, port.binding_vif_type, port.status) == (HOST, "other", "ACTIVE")
    address = port.fixed_ips[0]["ip_address"]
    assert public["local"]["cidr"] == "10.42.2.0/24"
    remote = _public_server(public, burst.id)
    assert remote is not None
    assert remote.status == "ACTIVE"
    assert federation.metadata(burst.id)["azfed_remote_id"] == remote.id
    [public_port] = list(public["conn"].network.ports(device_id=remote.id))
    assert public_port.name == f"azfed-{burst.id}"
    assert [ip["ip_address"] for ip in public_port.fixed_ips] == [address]
    mirror = _public_group(public, web_group.id)
    assert mirror is not None
    assert public_port.security_group_ids == [mirror.id]
    assert _public_ingress(public, mirror.id) == {("tcp", 22, "10.0.0.0/8")}
    listed = federation.conn.compute.get_server(burst.id).addresses
    assert [a["addr"] for net in listed.values() for a in net] == [address]
    (instance,) = federation.ec2_instances_for(remote.id)
    assert instance["PrivateIpAddress"] == address


def test_rules_and_groups_follow_to_the_public_cloud(
    federation: Federation, public: dict[str, Any], burst: Any, web_group: Any
) -> None:
    """A rule added to the local group appears in its public copy, a deleted one disappears;
    swapping the local port's groups swaps the public port's, and the copy no port uses any
    more is deleted from the public cloud."""
    conn = federation.conn
    mirror = _public_group(public, web_group.id)
    assert mirror is not None
    added = conn.network.create_security_group_rule(
        security_group_id=web_group.id,
        direction="ingress",
        ethertype="IPv4",
        protocol="tcp",
        port_range_min=443,
        port_range_max=443,
        remote_ip_prefix="0.0.0.0/0",
    )
    eventually(
        lambda: ("tcp", 443, "0.0.0.0/0") in _public_ingress(public, mirror.id) or None,
        "the new rule in the public copy of the group",
        timeout=15,
    )
    conn.network.delete_security_group_rule(added)
    eventually(
        lambda: _public_ingress(public, mirror.id) == {("tcp", 22, "10.0.0.0/8")} or None,
        "the deleted rule gone from the public copy",
        timeout=15,
    )

    default = next(conn.network.security_groups(name="default", project_id=burst.project_id))
    [port] = list(conn.network.ports(device_id=burst.id))
    conn.network.update_port(port, security_groups=[default.id])
    default_mirror = eventually(
        lambda: _public_group(public, default.id), "the default group's public copy", 15
    )
    remote = _public_server(public, burst.id)
    assert remote is not None

    def swapped() -> bool | None:
        [public_port] = list(public["conn"].network.ports(device_id=remote.id))
        return public_port.security_group_ids == [default_mirror.id] or None

    eventually(swapped, "the public port's groups swapped to the default group's copy", 15)
    eventually(
        lambda: _public_group(public, web_group.id) is None or None,
        "the unused web group's public copy deleted",
        15,
    )


def test_address_taken_in_the_public_cloud_moves_the_local_port(
    federation: Federation, public: dict[str, Any]
) -> None:
    """An address another port of the public subnet already has: the public cloud gives the
    public port another one, and the local port moves to it, so Nova, both Neutrons and EC2
    agree on the server's address. The port was made before the server (`--nic port-id=`):
    when the server is deleted the port stays, and the copy of its group, which no other
    port uses, is deleted from the public cloud."""
    conn = federation.conn
    group = conn.network.create_security_group(name=f"e2e-premade-{uuid.uuid4().hex[:6]}")
    taken = "10.42.2.250"
    [subnet] = list(
        public["conn"].network.subnets(tags="azfed:ec2-subnet=" + federation.vpc["ports_subnet"])
    )
    squatter = public["conn"].network.create_port(
        network_id=subnet.network_id,
        fixed_ips=[{"subnet_id": subnet.id, "ip_address": taken}],
        name="e2e-squatter",
    )
    local_port = conn.network.create_port(
        network_id=public["local"]["network_id"],
        fixed_ips=[{"subnet_id": public["local"]["subnet_id"], "ip_address": taken}],
        security_group_ids=[group.id],
    )
    try:
        server = _boot(federation, "pub-taken", {"port": local_port.id}, [])
        server = conn.compute.wait_for_server(
            server, status="ACTIVE", failures=["ERROR"], wait=300, interval=0.5
        )
        remote = _public_server(public, server.id)
        assert remote is not None
        [public_port] = list(public["conn"].network.ports(device_id=remote.id))
        [given] = [ip["ip_address"] for ip in public_port.fixed_ips]
        assert given != taken
        moved = conn.network.get_port(local_port.id)
        assert [ip["ip_address"] for ip in moved.fixed_ips] == [given]
        eventually(
            lambda: (
                [
                    a["addr"]
                    for net in conn.compute.get_server(server.id).addresses.values()
                    for a in net
                ]
                == [given]
                or None
            ),
            "Nova listing the address the public cloud gave",
            timeout=30,
        )
        (instance,) = federation.ec2_instances_for(remote.id)
        assert instance["PrivateIpAddress"] == given
        assert _public_group(public, group.id) is not None

        conn.compute.delete_server(federation.servers.pop("pub-taken"))
        conn.compute.wait_for_delete(server, wait=180)
        assert conn.network.get_port(local_port.id).binding_host_id in (None, "")
        eventually(
            lambda: _public_group(public, group.id) is None or None,
            "the copy of the kept port's group deleted",
            15,
        )
    finally:
        public["conn"].network.delete_port(squatter, ignore_missing=True)
        conn.network.delete_port(local_port, ignore_missing=True)
        conn.network.delete_security_group(group, ignore_missing=True)


def test_deleting_the_server_frees_both_ports(
    federation: Federation, public: dict[str, Any]
) -> None:
    """Deleting the server deletes its public server and the public port made for it, and its
    local port: the address is free on both sides."""
    conn = federation.conn
    server = _boot(federation, "pub-delete", {"uuid": public["local"]["network_id"]}, ["default"])
    server = conn.compute.wait_for_server(
        server, status="ACTIVE", failures=["ERROR"], wait=300, interval=0.5
    )
    remote = _public_server(public, server.id)
    assert remote is not None
    assert len(list(public["conn"].network.ports(name=f"azfed-{server.id}"))) == 1
    conn.compute.delete_server(federation.servers.pop("pub-delete"))
    conn.compute.wait_for_delete(server, wait=180)
    assert _public_server(public, server.id) is None
    assert list(public["conn"].network.ports(name=f"azfed-{server.id}")) == []
    assert list(conn.network.ports(device_id=server.id)) == []

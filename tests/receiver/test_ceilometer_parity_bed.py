"""Parity with Ceilometer itself (issue 12), all parts real: a Gnocchi of the test's own
(testbed/gnocchi.py) provisioned by Ceilometer 27.0.0's `ceilometer-upgrade`; a local VM written
by Ceilometer's own agents' code (ceilometer_publish.py, in Ceilometer's virtualenv): Nova's
boot notification through the notification agent's meter and event pipelines, then the
compute pollsters' samples through its sample pipeline, all published by its Gnocchi
publisher; a burst VM written by azfed's GnocchiSink. Both are read back through Gnocchi's API
and compared: resource types, attribute names (and which are set), metric names, units and
archive policies must be equal, but for the documented exceptions (DOCUMENTED). The comparison
is printed as a diff (with -s, also when it passes).

Given, not real: the hypervisor's stats (there is no libvirt here) and Nova's notification
(the bed's Nova does not send notifications); their formats are Ceilometer's and Nova's. The
two VMs are described by the same Nova facts but their host, AZ and id, so the attributes that
come from those facts must agree too.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azfed import wire
from azfed.receiver.sinks.gnocchi import CEILOMETER_POLICIES, RESOURCE_TYPES
from structlog.testing import capture_logs

from testbed import ceilometer
from testbed.gnocchi import ThrowawayGnocchi
from testbed.openstack import OpenStackBed
from tests.receiver.test_gnocchi_sink import ENI, FACTS, Nova, call, facts, read, report, start_sink
from tests.receiver.test_gnocchi_sink import write as sink_write

DRIVER = Path(__file__).with_name("ceilometer_publish.py")
DEVICE_TYPES = ("instance_network_interface", "instance_disk")
# the attributes both VMs take from the same Nova facts, so their values must agree too
SAME_FACTS = ("display_name", "flavor_id", "flavor_name", "image_ref", "server_group",
              "created_at", "launched_at", "project_id", "user_id")  # fmt: skip

# What differs by design, each with where it is documented. Nothing else may differ.
DOCUMENTED: dict[str, str] = {
    "instance_network_interface original_resource_id, name": (
        "docs/metering.md, the network.* rows: a vNIC is `<uuid>-<eni>` named by its ENI id, "
        "not libvirt's `<domain name>-<uuid>-<tap>` named by its tap (a public cloud has "
        "neither); compared here by form only"
    ),
    "instance metrics compute.instance.booting.time, disk.root.size, disk.ephemeral.size "
    "from Ceilometer only": (
        "docs/metering.md, 'Ceilometer meters azfed does not send': Nova's notifications "
        "carry them, not usage; azfed does not handle Nova's notifications"
    ),
    "instance availability_zone set by azfed only": (
        "docs/metering.md, 'The instance resource's attributes', availability_zone: Ceilometer "
        "writes it only when its event pipeline creates the resource, and its meter pipeline "
        "has created it from the same Nova notification first"
    ),
}
AZFED_ONLY_ATTRIBUTES = {"availability_zone"}
CEILOMETER_ONLY_METRICS = {"compute.instance.booting.time", "disk.root.size", "disk.ephemeral.size"}

# a local VM as Ceilometer's compute discovery builds it from libvirt's domain metadata
# (compute/discovery.py discover_libvirt_polling), on host compute-local
LOCAL_DOMAIN = "instance-0000002a"
TAP = "tap5c3e9a41-7d"
VDA = "vda"


def local_instance(vm: str) -> dict[str, Any]:
    return {
        "id": vm,
        "name": FACTS.name,
        "flavor": {
            "id": FACTS.flavor_id,
            "name": FACTS.flavor_name,
            "vcpus": 2,
            "ram": 2048,
            "disk": 20,
            "ephemeral": 0,
            "swap": 0,
        },
        "image": {"id": FACTS.image_ref},
        "os_type": "hvm",
        "architecture": "x86_64",
        "OS-EXT-SRV-ATTR:instance_name": LOCAL_DOMAIN,
        "OS-EXT-SRV-ATTR:host": "compute-local",
        "OS-EXT-STS:vm_state": "active",
        "tenant_id": FACTS.project_id,
        "user_id": FACTS.user_id,
        "hostId": hashlib.sha224(f"{FACTS.project_id}compute-local".encode()).hexdigest(),
        "status": "active",
        # Nova's server metadata, as discovery gives it with [compute] fetch_extra_metadata
        # (the way server_group reaches Gnocchi from the pollsters)
        "metadata": dict(FACTS.metadata),
    }


def nova_boot_notification(vm: str) -> dict[str, Any]:
    """compute.instance.create.end as nova-compute on compute-local sends it (the legacy format:
    nova/notifications/base.py info_from_instance, with compute/utils.py's fixed_ips and
    message), for the server FACTS describe."""
    payload = {
        "tenant_id": FACTS.project_id, "user_id": FACTS.user_id, "instance_id": vm,
        "display_name": FACTS.name, "reservation_id": "r-5h1x0t2q", "hostname": "web-1",
        "instance_type": FACTS.flavor_name, "instance_type_id": 5,
        "instance_flavor_id": FACTS.flavor_id, "architecture": "x86_64",
        "memory_mb": 2048, "disk_gb": 20, "vcpus": 2, "root_gb": 20, "ephemeral_gb": 0,
        "host": "compute-local", "node": "compute-local", "availability_zone": "local-az",
        "cell_name": "",
        # str(instance.created_at), and null_safe_isotime's utils.strtime
        "created_at": "2025-01-15 09:57:00+00:00", "terminated_at": "", "deleted_at": "",
        "launched_at": "2025-01-15T09:58:12.000000",
        "image_ref_url": f"http://127.0.0.1:9292/images/{FACTS.image_ref}", "os_type": None,
        "kernel_id": "", "ramdisk_id": "", "state": "active", "state_description": "",
        "progress": "", "access_ip_v4": None, "access_ip_v6": None,
        "fixed_ips": [{"address": "10.0.0.12", "type": "fixed", "version": 4, "meta": {},
                       "floating_ips": [], "label": "private", "vif_mac": "fa:16:3e:5c:3e:9a"}],
        "image_meta": {"base_image_ref": FACTS.image_ref, "container_format": "bare",
                       "disk_format": "qcow2", "min_disk": "20", "min_ram": "0"},
        "metadata": dict(FACTS.metadata),
        "message": "Success",
    }  # fmt: skip
    return {
        "priority": "info", "publisher_id": "compute.compute-local",
        "event_type": "compute.instance.create.end", "payload": payload,
        "metadata": {"message_id": str(uuid.uuid4()), "timestamp": "2025-01-15 09:58:13.1"},
    }  # fmt: skip


# what libvirt would report of it (LibvirtInspector's units: ns, MiB, bytes, requests)
STATS = {
    "instance": {
        "power_state": 1,
        "cpu_number": 2,
        "cpu_time": 123_000_000_000,
        "memory_actual": 2048.0,
        "memory_usage": 612.5,
    },
    "vnics": [
        {
            "name": TAP,
            "mac": "fa:16:3e:5c:3e:9a",
            "fref": None,
            "parameters": {
                "interfaceid": "5c3e9a41-7d00-4e2b-9a8c-0d1e2f3a4b5c",
                "bridge": "br-int",
            },
            "rx_bytes": 1_000_000,
            "tx_bytes": 2_000_000,
            "rx_packets": 1000,
            "tx_packets": 2000,
            "rx_drop": 0,
            "tx_drop": 0,
            "rx_errors": 0,
            "tx_errors": 0,
            "rx_bytes_delta": 0,
            "tx_bytes_delta": 0,
        },
    ],
    "disks": [
        {
            "device": VDA,
            "read_bytes": 4096_000,
            "read_requests": 1000,
            "write_bytes": 8192_000,
            "write_requests": 2000,
            "errors": 0,
            "wr_total_times": 0,
            "rd_total_times": 0,
        },
    ],
}


@dataclass
class Gnocchi:
    url: str
    conf: Path  # a ceilometer.conf pointing at it


@pytest.fixture
def ceilometer_gnocchi(openstack_bed: OpenStackBed, tmp_path: Path) -> Iterator[Gnocchi]:
    """A Gnocchi of this test's own, provisioned by `ceilometer-upgrade` as in a real cloud."""
    with ThrowawayGnocchi(openstack_bed, tmp_path / "gnocchi") as url:
        conf = ceilometer.write_config(tmp_path / "ceilometer", url)
        ceilometer.upgrade(conf)
        yield Gnocchi(url, conf)


def publish_with_ceilometer(conf: Path, vm: str) -> dict[str, Any]:
    """The local VM's samples through Ceilometer's pollsters and Gnocchi publisher."""
    body = {
        "meters": list(wire.METERS), "instance": local_instance(vm), "stats": STATS,
        "notifications": [nova_boot_notification(vm)],
    }  # fmt: skip
    out = subprocess.run(
        [str(ceilometer.venv() / "bin" / "python"), str(DRIVER), "--config-file", str(conf)],
        input=json.dumps(body), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    log = conf.parent / "ceilometer.log"
    assert out.returncode == 0, (
        f"Ceilometer's publisher failed (rc={out.returncode}):\n{out.stdout[-3000:]}\n"
        f"{out.stderr[-3000:]}\n{log.read_text(errors='replace')[-3000:] if log.exists() else ''}"
    )
    published: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    return published


async def write_with_azfed(url: str) -> str:
    """A burst VM's report through azfed's sink; its instance UUID. The sink must find
    everything it needs in place: it creates and changes no type or policy."""
    body, vm = report()
    with capture_logs() as logs:
        sink = await start_sink(url, Nova(vm, facts(vm)))
        await sink_write(sink, "k", body, time.time())
        await sink.close()
    changed = [e for e in logs if e["event"] in ("gnocchi.created", "gnocchi.type_updated")]
    assert changed == [], f"azfed's sink changed what Ceilometer provisioned: {changed}"
    return vm


# --- reading both back, in one comparable form --------------------------------------------------


async def resources_of(url: str, vm: str) -> dict[str, dict[str, Any]]:
    """The VM's instance resource and its devices' (by type: one each here)."""
    out = {"instance": await read(url, f"/v1/resource/instance/{vm}")}
    for rtype in DEVICE_TYPES:
        found = await call(url, "POST", f"/v1/search/resource/{rtype}",
                           {"=": {"instance_id": vm}})  # fmt: skip
        assert len(found) == 1, f"{rtype} of {vm}: {found}"
        out[rtype] = found[0]
    return out


async def shape(url: str, vm: str) -> dict[str, Any]:
    """What must be equal: per resource, its type, attribute names, which are set, its
    metrics' names, units and archive policies; and the values taken from Nova's facts."""
    out: dict[str, Any] = {}
    for role, r in (await resources_of(url, vm)).items():
        metrics = {}
        for name, mid in sorted(r["metrics"].items()):
            m = await read(url, f"/v1/metric/{mid}")
            metrics[name] = {"unit": m["unit"], "archive_policy": m["archive_policy"]["name"]}
        out[role] = {
            "type": r["type"],
            "attributes": sorted(k for k in r if k != "metrics"),
            "set": sorted(k for k, v in r.items() if v is not None and k != "metrics"),
            "metrics": metrics,
        }
        if role == "instance":
            out[role]["facts"] = {k: r[k] for k in SAME_FACTS}
    return out


def without_documented(ceilo: dict[str, Any], azfed: dict[str, Any]) -> None:
    """Take the documented differences (DOCUMENTED) out: the instance metrics only Ceilometer
    writes, the attributes only azfed sets. Each must be there as documented (else the
    exception is stale and the test says so); anything else on one side only stays, and shows
    in the diff."""
    metrics = ceilo["instance"]["metrics"]
    assert set(metrics) >= CEILOMETER_ONLY_METRICS, sorted(metrics)
    for name in CEILOMETER_ONLY_METRICS:
        del metrics[name]
    theirs, ours = set(ceilo["instance"]["set"]), set(azfed["instance"]["set"])
    assert ours - theirs >= AZFED_ONLY_ATTRIBUTES, f"stale exception: {sorted(theirs)}"
    azfed["instance"]["set"] = sorted(ours - AZFED_ONLY_ATTRIBUTES)


def diff(ceilo: dict[str, Any], azfed: dict[str, Any]) -> str:
    a = json.dumps(ceilo, indent=2, sort_keys=True).splitlines()
    b = json.dumps(azfed, indent=2, sort_keys=True).splitlines()
    return "\n".join(
        difflib.unified_diff(a, b, "ceilometer (local VM)", "azfed (burst VM)", n=3, lineterm="")
    )


async def policy_differences(url: str) -> str:
    """The archive policies azfed creates on a Gnocchi without them, read back beside the ones
    Ceilometer's publisher created from gnocchi_resources.yaml (azfed's under another name)."""
    found = []
    for name, body in CEILOMETER_POLICIES.items():
        await call(url, "POST", "/v1/archive_policy", {"name": f"azfed-{name}", **body})
        theirs = await read(url, f"/v1/archive_policy/{name}")
        ours = await read(url, f"/v1/archive_policy/azfed-{name}")
        for p in (theirs, ours):
            del p["name"]
            p["aggregation_methods"].sort()
        found.append(diff({name: theirs}, {name: ours}))
    return "\n".join(x for x in found if x)


# --- the test ---------------------------------------------------------------------------------


async def test_a_burst_vm_in_gnocchi_looks_like_a_local_vm_ceilometer_wrote(
    ceilometer_gnocchi: Gnocchi,
) -> None:
    """On a Gnocchi ceilometer-upgrade provisioned, where Ceilometer's agents wrote a local VM,
    azfed's sink writes a burst VM without changing any type or policy; the two VMs' resources
    have the same types, attributes, metrics, units and archive policies, but for the
    documented exceptions; and the archive policies azfed would create are Ceilometer's."""
    g = ceilometer_gnocchi
    upgraded = {t: await read(g.url, f"/v1/resource_type/{t}") for t in RESOURCE_TYPES}
    local = str(uuid.uuid4())
    published = publish_with_ceilometer(g.conf, local)
    burst = await write_with_azfed(g.url)

    # ceilometer-upgrade's types are azfed's, and stay as it left them
    for rtype, want in RESOURCE_TYPES.items():
        assert upgraded[rtype]["attributes"] == want, rtype
        assert await read(g.url, f"/v1/resource_type/{rtype}") == upgraded[rtype], rtype

    ceilo, azfed = await shape(g.url, local), await shape(g.url, burst)
    # vNIC ids and names: libvirt's from Ceilometer, the ENI's from azfed (DOCUMENTED)
    vnics = [(await resources_of(g.url, vm))["instance_network_interface"] for vm in (local, burst)]
    assert [(v["original_resource_id"], v["name"]) for v in vnics] == [
        (f"{LOCAL_DOMAIN}-{local}-{TAP}", TAP), (f"{burst}-{ENI}", ENI),
    ]  # fmt: skip
    without_documented(ceilo, azfed)
    found = diff(ceilo, azfed)
    n = len(published["samples"])
    print(f"\n== Ceilometer's local VM ({n} samples from its pollsters) vs azfed's burst VM")
    print(found or "(no difference)")
    print("documented exceptions, not compared:")
    for what, why in DOCUMENTED.items():
        print(f"  - {what}: {why}")
    policies = await policy_differences(g.url)
    print("== archive policies: Ceilometer's vs azfed's")
    print(policies or "(no difference)")
    assert not found, "azfed's burst VM differs from Ceilometer's local VM (diff above)"
    assert not policies, "azfed's archive policies differ from Ceilometer's (diff above)"

"""The guest collector reads the host's own usage from /proc (the real one, and fixed texts)."""

from __future__ import annotations

import uuid
from pathlib import Path

from azfed import wire
from azfed.agent.collect.guest import (
    GuestCollector,
    parse_cpu_ns,
    parse_diskstats,
    parse_meminfo,
    parse_netdev,
    parse_vcpus,
)
from azfed.wire import ALL_METERS, METERS
from structlog.testing import capture_logs

# /proc/net/dev's layout (columns squeezed): two header lines, then name: 8 rx and 8 tx fields
NETDEV = """Inter-|   Receive  |  Transmit
 face |bytes packets errs drop fifo frame compressed multicast|bytes packets ...
    lo: 5000 10 0 0 0 0 0 0 5000 10 0 0 0 0 0 0
  eth0: 1200 12 0 0 0 0 0 0 800 8 0 0 0 0 0 0
  eth1:  300 3 0 0 0 0 0 0 200 2 0 0 0 0 0 0
"""
DISKSTATS = """ 259       0 nvme0n1 100 0 2000 0 50 0 4000 0 0 0 0
 259       1 nvme0n1p1 90 0 1800 0 40 0 3000 0 0 0 0
   7       0 loop0 5 0 10 0 0 0 0 0 0 0 0
"""
# user nice system idle iowait irq softirq steal guest guest_nice
STAT = "cpu  10 2 5 80 5 1 1 7 3 0\ncpu0 5 1 2 40 2 1 0 3 1 0\ncpu1 5 1 3 40 3 0 1 4 2 0\n"


def test_network_counters_are_per_interface_and_leave_out_loopback() -> None:
    """Ceilometer meters each vNIC on its own instance_network_interface: so does the guest."""
    assert parse_netdev(NETDEV) == {
        "eth0": {"network.incoming.bytes": 1200, "network.incoming.packets": 12,
                 "network.outgoing.bytes": 800, "network.outgoing.packets": 8},
        "eth1": {"network.incoming.bytes": 300, "network.incoming.packets": 3,
                 "network.outgoing.bytes": 200, "network.outgoing.packets": 2},
    }  # fmt: skip


def test_disk_counters_are_per_whole_disk_in_bytes() -> None:
    """Partitions and loop devices are left out (they would count the same I/O twice);
    sectors are 512 bytes."""
    assert parse_diskstats(DISKSTATS) == {
        "nvme0n1": {"disk.device.read.requests": 100, "disk.device.read.bytes": 2000 * 512,
                    "disk.device.write.requests": 50, "disk.device.write.bytes": 4000 * 512},
    }  # fmt: skip


def test_cpu_time_in_ns_counts_what_the_guest_ran_not_idle_iowait_or_steal() -> None:
    """user + nice + system + irq + softirq = 19 ticks of 10 ms at USER_HZ 100: 190 ms."""
    assert parse_cpu_ns(STAT, hz=100) == 19 * 10_000_000


def test_vcpus_are_the_cpus_the_kernel_lists_and_memory_is_in_mib() -> None:
    assert parse_vcpus(STAT) == 2
    assert parse_meminfo("MemTotal: 4096000 kB\nMemAvailable: 1024000 kB\n") == (4000.0, 3000.0)


async def test_one_cycle_on_this_host_gives_every_meter_with_the_contract_units() -> None:
    """On the real /proc: every meter appears in the first cycle (cpu is cumulative since
    boot, no rate to wait for), unit and type as the wire contract says, volumes not negative,
    device meters named by their device; the instance is this host under its Nova UUID."""
    me = str(uuid.uuid4())
    col = GuestCollector(me, ALL_METERS)
    obs = await col.collect()
    instance_meters = {m for m, f in METERS.items() if f.resource_type == "instance"}
    assert {s.meter for s in obs.samples} >= instance_meters
    for s in obs.samples:
        assert (s.unit, s.type) == METERS[s.meter][:2]
        assert s.volume >= 0
        assert (s.device is None) == (METERS[s.meter].resource_type == "instance")
    assert [(i.instance_uuid, i.provider, i.state) for i in obs.instances] == [
        (me, "guest", "running")
    ]
    power = [s.volume for s in obs.samples if s.meter == "power.state"]
    assert power == [wire.POWER_STATES["running"]]


async def test_an_interface_whose_name_cannot_be_a_resource_id_is_left_out(tmp_path: Path) -> None:
    """Linux lets an interface be named almost anything; one sample the receiver refuses would
    lose the whole report, so that interface is left out (and logged once)."""
    (tmp_path / "net").mkdir()
    (tmp_path / "stat").write_text(STAT)
    (tmp_path / "meminfo").write_text("MemTotal: 4096000 kB\nMemAvailable: 1024000 kB\n")
    (tmp_path / "diskstats").write_text(DISKSTATS)
    (tmp_path / "net" / "dev").write_text(NETDEV.replace("eth1", "e/th1"))
    col = GuestCollector(str(uuid.uuid4()), ALL_METERS, proc=tmp_path)
    with capture_logs() as logs:
        obs = await col.collect()
        await col.collect()
    devices = {s.device for s in obs.samples if s.device}
    assert devices == {"eth0", "nvme0n1"}
    assert [e["device"] for e in logs if e["event"] == "device.skipped"] == ["e/th1"]

"""The guest collector reads the host's own usage from /proc (the real one, and fixed texts)."""

from __future__ import annotations

import uuid
from pathlib import Path

from azfed.agent.collect.guest import GuestCollector, parse_cpu, parse_diskstats, parse_netdev
from azfed.wire import ALL_METERS, METERS

from tests.waiting import until

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


def test_network_counters_leave_out_loopback() -> None:
    assert parse_netdev(NETDEV) == (1500, 1000)


def test_disk_counters_count_whole_disks_once_in_bytes() -> None:
    """Partitions and loop devices are left out; sectors are 512 bytes."""
    assert parse_diskstats(DISKSTATS) == {
        "reads": 100, "read_bytes": 2000 * 512, "writes": 50, "write_bytes": 4000 * 512,
    }  # fmt: skip


def test_cpu_busy_time_excludes_idle_and_iowait() -> None:
    times = parse_cpu("cpu  10 0 5 80 5 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8\n")
    assert (times.busy, times.total) == (15, 100)


async def test_two_cycles_on_this_host_give_every_meter_with_the_contract_units() -> None:
    """On the real /proc: every meter appears from the second cycle, unit and type as the wire
    contract says, volumes not negative; the instance is this host under its Nova UUID."""
    me = str(uuid.uuid4())
    col = GuestCollector(me, ALL_METERS)
    first = await col.collect()
    assert "cpu_util" not in {s.meter for s in first.samples}
    # /proc/stat counts in 10 ms ticks: a rate needs at least one to have passed
    ticks = cpu_total()
    await until(lambda: cpu_total() > ticks, "the host's CPU time to advance", timeout=10)
    second = await col.collect()
    assert {s.meter for s in second.samples} == set(ALL_METERS)
    for s in second.samples:
        assert (s.unit, s.type) == METERS[s.meter]
        assert s.volume >= 0
    assert [(i.instance_uuid, i.provider, i.state) for i in second.instances] == [
        (me, "guest", "running")
    ]


def cpu_total() -> int:
    return parse_cpu(Path("/proc/stat").read_text()).total

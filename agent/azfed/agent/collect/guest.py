"""Guest collector: an agent baked into the image reports the host it runs on, from /proc.

No cloud API, so no rate limits: one read of four small files a cycle. Counters in /proc are
already cumulative since boot, which is what Ceilometer's cumulative meters are (a reboot resets
them, as it resets a libvirt domain's): `cpu` is the CPU time the guest used, in ns, network
meters are per interface and disk meters per whole disk, as Ceilometer has them per vNIC and
per disk.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import socket
from pathlib import Path
from typing import Any

import structlog
from azfed.agent.collect.sample import Emit, Instance, Observation, sample
from azfed.agent.health import AgentMetrics
from azfed.config import AzfedConfig
from azfed.errors import ConfigError, Problem
from azfed.wire import DEVICE_PATTERN, POWER_STATES, Meter, is_device

log = structlog.get_logger(__name__)

SECTOR = 512  # /proc/diskstats counts 512-byte sectors whatever the device's block size
# whole disks only: partitions would count the same I/O twice
WHOLE_DISK = re.compile(r"^(?:[shv]d[a-z]+|xvd[a-z]+|nvme\d+n\d+|vd[a-z]+|mmcblk\d+)$")


def clock_ticks() -> int:
    """USER_HZ, the unit of /proc/stat's CPU times."""
    return os.sysconf("SC_CLK_TCK")


def parse_cpu_ns(stat: str, hz: int) -> int:
    """CPU time the guest used since boot, ns: user, nice, system, irq and softirq of the
    aggregate `cpu` line (guest time is already inside user and nice). Not idle, iowait (idle
    waiting on I/O) nor steal (the hypervisor running someone else): what a libvirt domain's
    cpu_time, Ceilometer's cpu, counts from the host."""
    fields = [int(x) for x in stat.splitlines()[0].split()[1:]]
    busy = sum(fields[:3]) + sum(fields[5:7])
    return busy * 1_000_000_000 // hz


def parse_vcpus(stat: str) -> int:
    """The CPUs the kernel sees: one `cpuN` line each."""
    return sum(1 for line in stat.splitlines() if re.match(r"cpu\d+ ", line))


def parse_meminfo(text: str) -> tuple[float, float]:
    """Memory, MiB: MemTotal, and in use MemTotal - MemAvailable (what `free` calls used +
    shared)."""
    kb = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in text.splitlines())}
    return kb["MemTotal"] / 1024, (kb["MemTotal"] - kb["MemAvailable"]) / 1024


# /proc/net/dev columns after the interface name
_NET: dict[Meter, int] = {
    "network.incoming.bytes": 0,
    "network.incoming.packets": 1,
    "network.outgoing.bytes": 8,
    "network.outgoing.packets": 9,
}


def parse_netdev(text: str) -> dict[str, dict[Meter, int]]:
    """Per interface but loopback: bytes and packets received and sent."""
    out: dict[str, dict[Meter, int]] = {}
    for line in text.splitlines()[2:]:
        name, _, data = line.partition(":")
        name, cols = name.strip(), data.split()
        if name == "lo" or len(cols) < 10:
            continue
        out[name] = {meter: int(cols[k]) for meter, k in _NET.items()}
    return out


def parse_diskstats(text: str) -> dict[str, dict[Meter, int]]:
    """Per whole disk: reads, read bytes, writes and written bytes."""
    out: dict[str, dict[Meter, int]] = {}
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 10 or not WHOLE_DISK.match(cols[2]):
            continue
        out[cols[2]] = {
            "disk.device.read.requests": int(cols[3]),
            "disk.device.read.bytes": int(cols[5]) * SECTOR,
            "disk.device.write.requests": int(cols[7]),
            "disk.device.write.bytes": int(cols[9]) * SECTOR,
        }
    return out


class GuestCollector:
    """Reports one instance, the host itself, under its Nova UUID from `[agent] instance_uuid`."""

    name = "guest"

    def __init__(
        self, instance_uuid: str, meters: tuple[Meter, ...], proc: Path = Path("/proc")
    ) -> None:
        self.uuid = instance_uuid.lower()
        self.meters = set(meters)
        self.proc = proc
        self.host = socket.gethostname()
        self.hz = clock_ticks()
        self._unnameable: set[str] = set()

    @classmethod
    def from_config(cls, cfg: AzfedConfig, metrics: AgentMetrics) -> GuestCollector:
        assert cfg.agent is not None
        if cfg.agent.instance_uuid is None:
            reason = "required with provider = 'guest': this host's Nova instance UUID"
            raise ConfigError(cfg.source, [Problem("[agent] instance_uuid", None, reason)])
        return cls(cfg.agent.instance_uuid, cfg.collect.meters)

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def checkpoint(self) -> dict[str, Any]:
        return {}  # counters live in the kernel; nothing to remember

    def restore(self, state: dict[str, Any]) -> None:
        return None

    async def stream(self, emit: Emit) -> None:
        # one instance, a few samples: one part
        await emit(await self.collect())

    async def collect(self) -> Observation:
        # small files, but still blocking reads: keep them off the event loop
        return await asyncio.to_thread(self._collect)

    def _collect(self) -> Observation:
        now = dt.datetime.now(dt.timezone.utc)
        read = {f: (self.proc / f).read_text() for f in ("stat", "meminfo", "net/dev", "diskstats")}
        samples = [
            sample(self.uuid, m, v, now, device)
            for m, device, v in self._values(read)
            if m in self.meters
        ]
        inst = Instance(self.uuid, "guest", self.host, "running", now)
        return Observation([inst], samples)

    def _values(self, read: dict[str, str]) -> list[tuple[Meter, str | None, float]]:
        total, used = parse_meminfo(read["meminfo"])
        values: list[tuple[Meter, str | None, float]] = [
            ("cpu", None, parse_cpu_ns(read["stat"], self.hz)),
            ("vcpus", None, parse_vcpus(read["stat"])),
            ("memory", None, total),
            ("memory.usage", None, used),
            ("power.state", None, POWER_STATES["running"]),
        ]
        for table in (parse_netdev(read["net/dev"]), parse_diskstats(read["diskstats"])):
            for device, counters in table.items():
                if self._nameable(device):
                    values += [(m, device, v) for m, v in counters.items()]
        return values

    def _nameable(self, device: str) -> bool:
        """A device whose name cannot end a Gnocchi resource id (Linux lets an interface be
        named almost anything) is left out, once logged: one such sample would make the
        receiver refuse the whole report."""
        if is_device(device):
            return True
        if device not in self._unnameable:
            self._unnameable.add(device)
            log.warning("device.skipped", device=device, why="not a valid resource id suffix",
                        pattern=DEVICE_PATTERN)  # fmt: skip
        return False

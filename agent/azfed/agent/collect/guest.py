"""Guest collector: an agent baked into the image reports the host it runs on, from /proc.

No cloud API, so no rate limits: one read of four small files a cycle. Counters in /proc are
already cumulative since boot, which is what Ceilometer's cumulative meters are; cpu_util is
the busy share of CPU time between two cycles, so the first cycle has none.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azfed.agent.collect.sample import Instance, Observation, Sample
from azfed.agent.health import AgentMetrics
from azfed.config import AzfedConfig
from azfed.errors import ConfigError, Problem
from azfed.wire import METERS, Meter

SECTOR = 512  # /proc/diskstats counts 512-byte sectors whatever the device's block size
# whole disks only: partitions would count the same I/O twice
WHOLE_DISK = re.compile(r"^(?:[shv]d[a-z]+|xvd[a-z]+|nvme\d+n\d+|vd[a-z]+|mmcblk\d+)$")


@dataclass(frozen=True)
class CpuTimes:
    busy: int
    total: int


def parse_cpu(stat: str) -> CpuTimes:
    """The aggregate `cpu` line of /proc/stat; idle and iowait are not busy."""
    fields = [int(x) for x in stat.splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])  # guest time is already inside user and nice
    return CpuTimes(total - idle, total)


def parse_meminfo(text: str) -> float:
    """Memory in use, MB: MemTotal - MemAvailable (what `free` calls used + shared)."""
    kb = {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in text.splitlines())}
    return (kb["MemTotal"] - kb["MemAvailable"]) / 1024


def parse_netdev(text: str) -> tuple[int, int]:
    """Bytes received and sent by every interface but loopback."""
    rx = tx = 0
    for line in text.splitlines()[2:]:
        name, _, data = line.partition(":")
        if name.strip() == "lo":
            continue
        cols = data.split()
        rx, tx = rx + int(cols[0]), tx + int(cols[8])
    return rx, tx


def parse_diskstats(text: str) -> dict[str, int]:
    """Reads, read bytes, writes and written bytes of the whole disks."""
    out = {"reads": 0, "read_bytes": 0, "writes": 0, "write_bytes": 0}
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 10 or not WHOLE_DISK.match(cols[2]):
            continue
        out["reads"] += int(cols[3])
        out["read_bytes"] += int(cols[5]) * SECTOR
        out["writes"] += int(cols[7])
        out["write_bytes"] += int(cols[9]) * SECTOR
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
        self._last_cpu: CpuTimes | None = None

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

    async def collect(self) -> Observation:
        # small files, but still blocking reads: keep them off the event loop
        return await asyncio.to_thread(self._collect)

    def _collect(self) -> Observation:
        now = dt.datetime.now(dt.timezone.utc)
        read = {f: (self.proc / f).read_text() for f in ("stat", "meminfo", "net/dev", "diskstats")}
        values = self._values(read)
        samples = [
            Sample(self.uuid, m, *METERS[m], v, now) for m, v in values.items() if m in self.meters
        ]
        inst = Instance(self.uuid, "guest", self.host, "running", now)
        return Observation([inst], samples)

    def _values(self, read: dict[str, str]) -> dict[Meter, float]:
        rx, tx = parse_netdev(read["net/dev"])
        disk = parse_diskstats(read["diskstats"])
        values: dict[Meter, float] = {
            "memory.usage": parse_meminfo(read["meminfo"]),
            "network.incoming.bytes": rx,
            "network.outgoing.bytes": tx,
            "disk.read.bytes": disk["read_bytes"],
            "disk.write.bytes": disk["write_bytes"],
            "disk.read.requests": disk["reads"],
            "disk.write.requests": disk["writes"],
        }
        cpu, last = parse_cpu(read["stat"]), self._last_cpu
        self._last_cpu = cpu
        if last is not None and cpu.total > last.total:
            values["cpu_util"] = 100.0 * (cpu.busy - last.busy) / (cpu.total - last.total)
        return values

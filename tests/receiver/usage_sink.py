"""A sink that keeps every batch in memory and reads usage back from them (a UsageReader).

Test-only, like memory_sink.MemorySink: it stands where Gnocchi stands in production for the
receiver's GET /v1/instances/{id}/usage, so the driver's diagnostics can be tested against the
real receiver without Gnocchi."""

from __future__ import annotations

from typing import Any

from tests.receiver.memory_sink import MemorySink


class UsageMemorySink(MemorySink):
    """The newest sample of each (resource type, device, meter) of an instance, as
    GnocchiSink.latest answers it."""

    name = "usage-memory"

    async def latest(self, uuid: str) -> list[dict[str, Any]] | None:
        newest: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        for batch in self.batches:
            for s in batch.samples:
                if s["instance_uuid"] != uuid:
                    continue
                key = (s["resource_type"], s.get("device"), s["meter"])
                if key not in newest or newest[key]["timestamp"] <= s["timestamp"]:
                    newest[key] = {
                        "resource_type": s["resource_type"], "device": s.get("device"),
                        "meter": s["meter"], "unit": s["unit"], "timestamp": s["timestamp"],
                        "value": s["volume"],
                    }  # fmt: skip
        return list(newest.values()) or None

"""What a collector produces: instance observations and usage samples, in the wire's terms.

These are the contract's `instances[]` and `samples[]` items as frozen dataclasses; `as_wire()`
renders exactly the JSON the receiver validates (see `azfed.wire`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol

from azfed.wire import Meter, MeterType, Provider, State, StatusChecks


def rfc3339(ts: dt.datetime) -> str:
    """UTC, second precision or better, with a Z: the form Gnocchi and the receiver expect."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.timezone.utc)
    return ts.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Instance:
    """One federated instance as the public cloud sees it now."""

    instance_uuid: str
    provider: Provider
    remote_id: str
    state: State
    observed_at: dt.datetime
    private_ips: tuple[str, ...] = ()
    public_ips: tuple[str, ...] = ()
    instance_type: str | None = None
    az: str | None = None
    launched_at: dt.datetime | None = None
    status_checks: StatusChecks | None = None

    def as_wire(self) -> dict[str, Any]:
        return {
            "instance_uuid": self.instance_uuid,
            "provider": self.provider,
            "remote_id": self.remote_id,
            "state": self.state,
            "ips": {"private": list(self.private_ips), "public": list(self.public_ips)},
            "instance_type": self.instance_type,
            "az": self.az,
            "launched_at": rfc3339(self.launched_at) if self.launched_at else None,
            "status_checks": self.status_checks,
            "observed_at": rfc3339(self.observed_at),
        }


@dataclass(frozen=True, slots=True)
class Sample:
    """One measure of one meter of one instance (Ceilometer's meter names and units)."""

    resource_id: str
    meter: Meter
    unit: str
    type: MeterType
    volume: float
    timestamp: dt.datetime

    def as_wire(self) -> dict[str, Any]:
        return {
            "resource_id": self.resource_id,
            "meter": self.meter,
            "unit": self.unit,
            "type": self.type,
            "volume": self.volume,
            "timestamp": rfc3339(self.timestamp),
        }


@dataclass(slots=True)
class Observation:
    """What one collection cycle found."""

    instances: list[Instance] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)


class Collector(Protocol):
    """A source of observations.

    Lifecycle: `open()` once before the first `collect()`; `collect()` is never called again
    before the previous call returned (the scheduler skips overlapping ticks); `close()` once,
    after the last `collect()` returned or was cancelled.
    """

    name: str

    async def open(self) -> None: ...

    async def collect(self) -> Observation: ...

    async def close(self) -> None: ...

    def checkpoint(self) -> dict[str, Any]:
        """State to persist once a cycle's findings are spooled (e.g. what was emitted)."""
        ...

    def restore(self, state: dict[str, Any]) -> None:
        """Take back a checkpoint at start, before `open()`."""
        ...

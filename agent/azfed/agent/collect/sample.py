"""What a collector produces: instance observations and usage samples, in the wire's terms.

These are the contract's `instances[]` and `samples[]` items as frozen dataclasses; `as_wire()`
renders exactly the JSON the receiver validates (see `azfed.wire`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from azfed.wire import METERS, Meter, MeterType, Provider, State, StatusChecks, resource_id

# A cycle's samples share a few timestamps (the periods read): each is written once.
_RENDERED_KEPT = 4096
_rendered: dict[dt.datetime, str] = {}


def rfc3339(ts: dt.datetime) -> str:
    """UTC, second precision or better, with a Z: the form Gnocchi and the receiver expect."""
    text = _rendered.get(ts)
    if text is None:
        if len(_rendered) >= _RENDERED_KEPT:
            _rendered.clear()
        text = _rendered[ts] = _render(ts)
    return text


def _render(ts: dt.datetime) -> str:
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
    """One measure of one meter of one instance, or of one of its vNICs or disks (`device`),
    in Ceilometer's meter names and units (`wire.METERS`)."""

    instance_uuid: str
    meter: Meter
    unit: str
    type: MeterType
    volume: float
    timestamp: dt.datetime
    device: str | None = None

    @property
    def resource_id(self) -> str:
        return resource_id(self.instance_uuid, self.device)

    def as_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "instance_uuid": self.instance_uuid,
            "resource_type": METERS[self.meter].resource_type,
            "meter": self.meter,
            "unit": self.unit,
            "type": self.type,
            "volume": self.volume,
            "timestamp": rfc3339(self.timestamp),
        }
        if self.device is not None:
            out["device"] = self.device
        return out


def sample(
    instance_uuid: str, meter: Meter, volume: float, at: dt.datetime, device: str | None = None
) -> Sample:
    """A sample in its meter's unit and type."""
    fact = METERS[meter]
    return Sample(instance_uuid, meter, fact.unit, fact.type, volume, at, device)


@dataclass(slots=True)
class Observation:
    """What one collection cycle found, or a part of it (`Collector.stream`)."""

    instances: list[Instance] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)


# Where a collector hands each part of a cycle (the agent's: the batcher's `add`).
Emit = Callable[[Observation], Awaitable[None]]


async def whole_cycle(stream: Callable[[Emit], Awaitable[None]]) -> Observation:
    """A `stream` of parts gathered into one Observation (a cycle held whole: for tests and
    tools, never the agent's cycle)."""
    whole = Observation()

    async def keep(part: Observation) -> None:
        whole.instances += part.instances
        whole.samples += part.samples

    await stream(keep)
    return whole


class Collector(Protocol):
    """A source of observations.

    Lifecycle: `open()` once before the first cycle (`stream()` or `collect()`); a cycle is
    never started before the previous one returned (the scheduler skips overlapping ticks);
    `close()` once, after the last cycle returned or was cancelled.
    """

    name: str

    async def open(self) -> None: ...

    async def stream(self, emit: Emit) -> None:
        """One cycle, handed to `emit` in parts as they are complete, so the agent never
        holds a whole cycle: each part carries its instances with all of their samples this
        cycle, in the order the cloud listed them. Parts emitted before a failure stand; the
        next cycle emits their samples again (the same values: the receiver and Gnocchi keep
        one measure per timestamp)."""
        ...

    async def collect(self) -> Observation:
        """One cycle held whole (`whole_cycle(self.stream)`)."""
        ...

    async def close(self) -> None: ...

    def checkpoint(self) -> dict[str, Any]:
        """State to persist once a cycle's findings are spooled (e.g. what was emitted)."""
        ...

    def restore(self, state: dict[str, Any]) -> None:
        """Take back a checkpoint at start, before `open()`."""
        ...

"""Where accepted reports are written. One module per implementation, registered by name and
imported lazily, so a receiver that writes only to Gnocchi never imports openstacksdk.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from azfed.errors import AzfedError

if TYPE_CHECKING:
    from azfed.config import AzfedConfig
    from azfed.receiver.nova import NovaClient


# The member of a parsed report holding its `wire.Unconverted` samples (a version 1 report read
# as version 2); the receiver adds it after validation, so no agent can send it.
UNCONVERTED = "_unconverted"
CONTRACT = "contract"  # who dropped them: the contract, not a sink
V1_REASON = "v1_not_convertible"


@dataclass(frozen=True)
class Dropped:
    """One resource's samples a sink's backend refused for good (a 4xx about that resource:
    retrying the report would be refused again), while the rest of the report was written."""

    sink: str
    resource_id: str
    samples: int
    reason: str  # a stable label: resource_refused | measures_refused | v1_not_convertible
    detail: str  # the backend's answer, for the operator


@dataclass(frozen=True)
class Batch:
    """One accepted report, validated, as the sinks get it. Sinks add to `dropped` what their
    backend refused; the receiver counts, logs and keeps it for `azfed status`."""

    key: str
    report: dict[str, Any]
    received_at: float
    dropped: list[Dropped] = field(default_factory=list)

    def __post_init__(self) -> None:
        # samples of a version 1 report that version 2 cannot carry (`wire.upgrade_v1`): kept
        # for `azfed status` and counted like a sink's refusals, never silent
        for u in self.report.get(UNCONVERTED, ()):
            detail = f"{u.meter}: {u.reason}"
            self.dropped.append(Dropped(CONTRACT, u.instance_uuid, u.samples, V1_REASON, detail))

    @property
    def instances(self) -> list[dict[str, Any]]:
        return list(self.report["instances"])

    @property
    def samples(self) -> list[dict[str, Any]]:
        return list(self.report["samples"])


class Sink(Protocol):
    """A destination of reports.

    Lifecycle: `start()` once before the first `write()`; `write()` may be called concurrently
    and must be safe to repeat for the same batch (a failed report is retried whole); a
    resource its backend refuses for good is added to `batch.dropped`, not raised, so one
    resource never blocks the others' data (Ceilometer's Gnocchi publisher does the same);
    `check()` raises if the backend cannot be reached (it backs /readyz); `close()` is not
    called until every write has finished.
    """

    name: str

    async def start(self) -> None: ...

    async def write(self, batch: Batch) -> None: ...

    async def check(self) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class UsageReader(Protocol):
    """A sink that can read back what it wrote: the newest value of each of an instance's
    meters (GET /v1/instances/{id}/usage, for the dashboard), None if it has no such instance.
    Called only between `start()` and `close()`."""

    async def latest(self, uuid: str) -> list[dict[str, Any]] | None: ...


class SinkError(AzfedError):
    """A sink's backend failed; the report is answered 503 and the agent retries it, so
    nothing is lost meanwhile. The message names the backend and its answer: fix or wait for
    that backend (the receiver's /readyz shows which one fails)."""


# name -> "module:factory"; factory(config, nova) -> Sink. `nova` is the app's one NovaClient,
# shared so the receiver holds one Keystone session and one bound on Nova calls.
SINKS: dict[str, str] = {
    "null": "azfed.receiver.sinks.null:from_config",
    "gnocchi": "azfed.receiver.sinks.gnocchi:from_config",
    "nova": "azfed.receiver.sinks.nova:from_config",
}


def make_sink(name: str, config: AzfedConfig, nova: NovaClient | None) -> Sink:
    """Build the sink registered as `name` from the config."""
    module, _, attr = SINKS[name].partition(":")
    factory = getattr(importlib.import_module(module), attr)
    sink: Sink = factory(config, nova)
    return sink

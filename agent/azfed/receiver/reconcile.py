"""Reconciliation: what the agents report against what Nova knows, both ways.

- `public_without_nova`: an agent reports a live public instance tagged with a Nova UUID that
  Nova does not have (its Nova instance was deleted while the cloud call failed, or someone
  launched it by hand with our tag). It costs money: report it, and clean it if configured.
- `nova_without_public`: a Nova instance in a public AZ that no agent has reported for longer
  than the grace period (the public instance is gone, or the agent is).
- `public_gone`: a live Nova instance whose public instance an agent reports terminated (someone
  terminated it in the public cloud's console): the Nova instance is a husk; delete or rebuild it.

Found orphans go to the log (one line each, per run), the `azfed_receiver_orphans` gauge and
the store (for `azfed status`). Cleaning is a pluggable callable (agent/receiver/cleaner.py
makes one from the config's `[aws]` table) and only ever applies to `public_without_nova`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from azfed.receiver.lease import Lease
from azfed.receiver.metrics import Metrics
from azfed.receiver.nova import NovaClient, ServerFacts
from azfed.receiver.store import Store

if TYPE_CHECKING:
    from azfed.config import AzfedConfig

log = structlog.get_logger(__name__)

KINDS = ("public_without_nova", "nova_without_public", "public_gone")
# A public instance in these states is not running up a bill, or is about to stop doing so.
_GONE = {"terminated", "shutting-down"}
# Nova instances in these statuses are expected to have no public instance (yet, or any more).
_NO_PUBLIC_EXPECTED = {"BUILD", "ERROR", "DELETED", "SOFT_DELETED", "SHELVED_OFFLOADED"}


@dataclass(frozen=True)
class Orphan:
    kind: str
    instance_uuid: str
    provider: str
    remote_id: str
    reason: str


Cleaner = Callable[[Orphan], Awaitable[None]]


def _ts(value: str) -> float:
    try:
        return datetime.fromisoformat(value.upper()).timestamp()
    except ValueError:
        return 0.0


def find_orphans(
    reported: list[dict[str, Any]], servers: list[ServerFacts], now: float, grace_s: float
) -> list[Orphan]:
    """Pure: the orphans among what agents reported and what Nova has in the public AZs.
    `reported` rows need instance_uuid, provider, remote_id, state and received_at."""
    in_nova = {s.uuid for s in servers}
    fresh = {r["instance_uuid"] for r in reported if now - r["received_at"] <= grace_s}
    out = [
        Orphan(
            "public_without_nova",
            r["instance_uuid"],
            r["provider"],
            r["remote_id"],
            f"the agent reports it {r['state']}; Nova has no such instance",
        )
        for r in reported
        if r["state"] not in _GONE
        and r["instance_uuid"] not in in_nova
        and r["instance_uuid"] in fresh
    ]
    latest = {r["instance_uuid"]: r for r in reported}
    for s in servers:
        gone = latest.get(s.uuid)
        if gone is not None and gone["state"] in _GONE and s.status not in _NO_PUBLIC_EXPECTED:
            reason = f"Nova has it {s.status} in {s.az}; the agent reports it {gone['state']}"
            out.append(Orphan("public_gone", s.uuid, gone["provider"], gone["remote_id"], reason))
            continue
        if s.uuid in fresh or s.status in _NO_PUBLIC_EXPECTED or now - _ts(s.created_at) < grace_s:
            continue
        reason = f"Nova has it {s.status} in {s.az}; no agent reported it in {grace_s:.0f}s"
        out.append(
            Orphan("nova_without_public", s.uuid, "", s.metadata.get("azfed_remote_id", ""), reason)
        )
    return out


class Reconciler:
    def __init__(
        self,
        config: AzfedConfig,
        store: Store,
        nova: NovaClient,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        cleaner: Cleaner | None = None,
        lease: Lease | None = None,
    ) -> None:
        self.public_azs = config.nova.public_azs
        self.cfg = config.reconcile
        self.retention_s = config.receiver.dedupe_retention_s if config.receiver else 8 * 86400.0
        self.store, self.nova, self.metrics = store, nova, metrics
        self.clock, self.cleaner = clock, cleaner
        # With a lease, only its holder runs (several receivers share one database); without
        # one, every interval.
        self.lease = lease

    async def run_forever(self) -> None:
        while True:
            if self.lease is None or self.lease.held:
                await self._run_logged()
            await self._pause()

    async def _run_logged(self) -> None:
        try:
            await self.run_once()
            self.metrics.reconcile_runs.labels("ok").inc()
        except Exception:  # a bad run must not end the loop: log it, try next interval
            self.metrics.reconcile_runs.labels("failed").inc()
            log.exception("reconcile.failed")

    async def _pause(self) -> None:
        """The interval, cut short when this receiver takes the lease over (the one that held
        it died): the new holder runs at once."""
        if self.lease is None:
            await asyncio.sleep(self.cfg.interval_s)
            return
        self.lease.gained.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.cfg.interval_s):
                await self.lease.gained.wait()

    async def run_once(self) -> list[Orphan]:
        """One pass: find, record, report and (if configured) clean orphans; prune old keys."""
        now = self.clock()
        servers = await self.nova.servers_in(self.public_azs)
        orphans = find_orphans(await self.store.all_instances(), servers, now, self.cfg.grace_s)
        await self.store.set_orphans(((o.kind, o.instance_uuid, asdict(o)) for o in orphans), now)
        for kind in KINDS:
            self.metrics.orphans.labels(kind).set(sum(o.kind == kind for o in orphans))
        for o in orphans:
            log.warning("reconcile.orphan", **asdict(o))
        await self._clean([o for o in orphans if o.kind == "public_without_nova"], now)
        pruned = await self.store.prune(now - self.retention_s)
        log.info("reconcile.done", servers=len(servers), orphans=len(orphans), pruned_keys=pruned)
        return orphans

    async def _clean(self, orphans: list[Orphan], now: float) -> None:
        if self.cfg.action != "clean" or not orphans:
            return
        if self.cleaner is None:
            log.warning(
                "reconcile.clean_unavailable", reason="no cloud backend given: reporting only"
            )
            return
        for o in orphans:  # one at a time: cleaning is rare and each call is a cloud API call
            try:
                await self.cleaner(o)
            except Exception as err:  # plugin boundary: one failure must not stop the rest
                log.exception("reconcile.clean_failed", instance_uuid=o.instance_uuid)
                await self.store.record(
                    "clean_failed", o.instance_uuid, {**asdict(o), "error": repr(err)}, now
                )
                continue
            await self.store.record("cleaned", o.instance_uuid, asdict(o), now)

"""A lease in the receivers' shared database: the once-per-cloud work (reconciliation, and the
cleaning and key pruning it does) runs on one receiver at a time, and moves to another within
`[reconcile] lease_ttl_s` when that one dies.

The holder renews every third of the lease's life; a receiver that cannot renew (its database
connection failed) stops acting as holder at once, because the others may take the lease as
soon as it expires. Expiry is judged on the receivers' own clocks: they must agree to well
within a third of `lease_ttl_s` (NTP does). The work itself is safe to run twice in the worst
case (a holder's run outlasting a lost lease): orphans are replaced as a set, and the cleaner
asks the cloud again before it terminates anything.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Callable

import structlog
from azfed.receiver.metrics import Metrics
from azfed.receiver.store import Store
from sqlalchemy.exc import SQLAlchemyError

log = structlog.get_logger(__name__)

RECONCILE = "reconcile"


def holder_id() -> str:
    """This receiver process, as the lease table names it: host, pid and a random part (a pid
    reused after a restart is another holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Lease:
    """Lease `name`, kept by `keep()` while the receiver runs; `held` says whether this
    receiver may do the work now, and `gained` is set each time it takes the lease."""

    def __init__(
        self, store: Store, name: str, ttl_s: float, clock: Callable[[], float], metrics: Metrics
    ) -> None:
        self.store, self.name, self.ttl_s, self.clock = store, name, ttl_s, clock
        self.holder = holder_id()
        self.held = False
        self.gained = asyncio.Event()
        self._gauge = metrics.lease_held.labels(name)

    async def keep(self) -> None:
        """Take or renew the lease every third of its life, until cancelled."""
        while True:
            try:
                await self.renew()
            except Exception:  # the loop must outlive any failure, or `held` would go stale
                log.exception("lease.renew_failed", lease=self.name)
                self._set(False)
            await asyncio.sleep(self.ttl_s / 3)

    async def renew(self) -> bool:
        """One attempt to take or renew; returns whether this receiver holds the lease."""
        try:
            held = await self.store.take_lease(self.name, self.holder, self.clock(), self.ttl_s)
        except SQLAlchemyError as err:
            log.warning("lease.renew_failed", lease=self.name, error=str(err)[:200])
            held = False
        self._set(held)
        return held

    async def release(self) -> None:
        """On a clean stop: hand the lease over at once instead of after its expiry."""
        if not self.held:
            return
        self.held = False
        self._gauge.set(0)
        log.info("lease.released", lease=self.name, holder=self.holder)
        try:
            await self.store.drop_lease(self.name, self.holder)
        except SQLAlchemyError as err:  # it expires by itself
            log.warning("lease.release_failed", lease=self.name, error=str(err)[:200])

    def _set(self, held: bool) -> None:
        if held and not self.held:
            log.info("lease.acquired", lease=self.name, holder=self.holder, ttl_s=self.ttl_s)
            self.gained.set()
        elif self.held and not held:
            log.warning("lease.lost", lease=self.name, holder=self.holder)
        self.held = held
        self._gauge.set(1 if held else 0)

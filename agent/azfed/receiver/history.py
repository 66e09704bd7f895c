"""The scheduler filter's decisions, kept: read from its state file into the receiver's store.

The filter keeps only its last decisions (engine.RECENT_DECISIONS) and starts with none when
nova-scheduler restarts, so the Federation panel's chart of local load and bursts over time
needs them kept elsewhere: the receiver copies each new decision of the state file into its
store (every SYNC_INTERVAL_S, and at each GET /v1/decisions so the answer is current) and
forgets those older than KEEP_S. The store is the one the receiver keeps everything in, so the
history survives the receiver's restarts, and receivers sharing a database share it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from azfed.policy.engine import RECENT_DECISIONS
from azfed.receiver.placement import StateUnreadable, recent_decisions
from azfed.receiver.store import Store
from sqlalchemy.exc import SQLAlchemyError

log = structlog.get_logger(__name__)

# a week: the panel charts a day; the rest answers "what did it do over the weekend"
KEEP_S = 7 * 24 * 3600.0
SYNC_INTERVAL_S = 60.0


def _dated(doc: Any) -> bool:
    at = doc.get("at") if isinstance(doc, dict) else None
    return isinstance(at, int | float) and not isinstance(at, bool) and math.isfinite(at)


async def sync(store: Store, state_file: Path, now: float) -> int:
    """Keep the state file's decisions not kept yet; forget those older than KEEP_S. Returns
    how many were added. Raises StateUnreadable (the file) or SQLAlchemyError (the store)."""
    found = await asyncio.to_thread(recent_decisions, state_file, RECENT_DECISIONS)
    added = await store.keep_decisions([d for d in found if _dated(d)], now - KEEP_S)
    if added:
        log.info("decisions.kept", added=added, state_file=str(state_file))
    return added


async def keep_syncing(store: Store, state_file: Path, clock: Callable[[], float]) -> None:
    """`sync` every SYNC_INTERVAL_S until cancelled; a failed sync is logged and the next one
    tries again (the file keeps its last decisions meanwhile)."""
    while True:
        try:
            await sync(store, state_file, clock())
        except (StateUnreadable, SQLAlchemyError) as err:
            log.warning("decisions.sync_failed", state_file=str(state_file), error=str(err))
        await asyncio.sleep(SYNC_INTERVAL_S)

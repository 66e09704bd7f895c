"""One store transaction, retried when the database chose it as a deadlock's victim.

On MySQL/MariaDB two receivers writing the same rows in different orders deadlock: InnoDB
rolls one transaction back with error 1213, and so does Galera when a transaction loses
certification against one committed on another node ("WSREP detected deadlock/conflict").
A lock wait that runs out (1205) rolls back the statement. The transaction did nothing in
either case, so running it again from the start is safe; the attempts are bounded and spread
with full jitter so the two losers do not meet again at once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = structlog.get_logger(__name__)

T = TypeVar("T")

# MySQL/MariaDB error codes: ER_LOCK_DEADLOCK (also Galera's certification failure) and
# ER_LOCK_WAIT_TIMEOUT.
RETRIED_ERRORS = frozenset({1213, 1205})
ATTEMPTS = 5  # all attempts, the first included
BASE_DELAY_S = 0.02
MAX_DELAY_S = 0.5


def error_code(err: DBAPIError) -> object:
    """The driver's error code (pymysql's first argument), or None."""
    args = getattr(err.orig, "args", ())
    return args[0] if args else None


def is_retryable(err: DBAPIError) -> bool:
    """Whether the database rolled the transaction back for a reason that a retry clears."""
    return error_code(err) in RETRIED_ERRORS


async def in_transaction(
    engine: AsyncEngine,
    work: Callable[[AsyncConnection], Awaitable[T]],
    *,
    attempts: int = ATTEMPTS,
) -> T:
    """Run `work` in a transaction (committed when it returns); run it again in a new one
    when the database rolled it back for a deadlock or a lock wait timeout, up to `attempts`
    times in all. `work` must do nothing outside the database: it may run more than once."""
    for attempt in range(1, attempts + 1):
        try:
            async with engine.begin() as conn:
                return await work(conn)
        except DBAPIError as err:
            if attempt == attempts or not is_retryable(err):
                raise
            delay = random.uniform(0, min(MAX_DELAY_S, BASE_DELAY_S * 2**attempt))
            log.warning("store.retried", attempt=attempt, code=error_code(err), delay_s=delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")

"""The receiver's schema version: upgrade a database to this azfed's head, say where it is,
and refuse to serve on one that is behind.

The revisions live in `migrations/versions/`, written expand-then-contract (see its README),
so a database upgraded by a newer azfed still serves this one during a rolling upgrade: a
revision this azfed does not know is taken as newer, and logged. SQLite is upgraded at start
(`Store.open`): one receiver owns the file, nothing of another version runs beside it.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from azfed.errors import AzfedError
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

log = structlog.get_logger(__name__)
# Alembic says "Context impl SQLiteImpl." at info on every check: that would land in the
# receiver's logs at each start and in `azfed status --json`'s output. Upgrades are reported
# by `azfed receiver db upgrade` itself.
logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)

SCRIPTS = "azfed.receiver:migrations"
# The revision equal to the tables azfed created before it used migrations.
INITIAL = "0001"
_A_TABLE_OF_INITIAL = "azfed_reports"


class SchemaError(AzfedError):
    """The database's schema is not the one this azfed needs."""


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPTS)
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest revision this azfed knows."""
    found = ScriptDirectory.from_config(_config()).get_current_head()
    assert found is not None, "the receiver's migrations have no head"
    return found


def known(revision: str) -> bool:
    return any(
        s.revision == revision for s in ScriptDirectory.from_config(_config()).walk_revisions()
    )


def _current(conn: Connection) -> str | None:
    rev: str | None = MigrationContext.configure(conn).get_current_revision()
    return rev


async def current(engine: AsyncEngine) -> str | None:
    """The database's revision; None for an empty one (or one made before migrations)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


def _upgrade(conn: Connection) -> tuple[str | None, str | None]:
    before = _current(conn)
    if before is not None and not known(before):
        return before, before  # upgraded by a newer azfed: nothing this one can add
    cfg = _config(conn)
    if before is None and inspect(conn).has_table(_A_TABLE_OF_INITIAL):
        command.stamp(cfg, INITIAL)  # made by an older azfed's create_all: that is 0001
    command.upgrade(cfg, "head")
    return before, _current(conn)


async def upgrade(engine: AsyncEngine) -> tuple[str | None, str | None]:
    """Bring the database to head; returns its revision before and after. A database at a
    revision this azfed does not know (a newer one's) is left as it is, and logged."""
    async with engine.begin() as conn:
        before, after = await conn.run_sync(_upgrade)
    if after is not None and not known(after):
        log.warning("store.schema_newer", revision=after, head=head(), url=_safe(engine))
    return before, after


async def check(engine: AsyncEngine) -> None:
    """Raise SchemaError unless the database is at head (or at a newer revision)."""
    rev, want = await current(engine), head()
    if rev == want:
        return
    if rev is not None and not known(rev):
        log.warning("store.schema_newer", revision=rev, head=want, url=_safe(engine))
        return
    raise SchemaError(
        f"the receiver's database {_safe(engine)} is at schema revision {rev or 'none'}, "
        f"this azfed needs {want}: run `azfed receiver db upgrade --config FILE` "
        "(with the receiver's config) and start the receiver again"
    )


def _safe(engine: AsyncEngine) -> str:
    url: Any = engine.url
    return str(url.render_as_string(hide_password=True))

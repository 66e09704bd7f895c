"""The receiver's state: dedupe keys, agents' sequence numbers, the instance state cache,
orphans found by reconciliation, the audit trail of what the receiver decided and the history
of the scheduler filter's decisions.

SQLite by default; MySQL/MariaDB (Galera) when several receivers share the load behind a
balancer: the dedupe key's primary key is what makes a report's effect happen once across all
of them. The schema is Alembic's (`migrate`): these tables declare what its head creates.
Every transaction runs through `in_transaction`, which retries deadlock victims.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from azfed.errors import AzfedError
from azfed.receiver import migrate
from azfed.receiver.transactions import in_transaction
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Double,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    and_,
    bindparam,
    case,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.expression import Executable

T = TypeVar("T")

metadata = MetaData()
# Case- and trailing-space-sensitive keys on MySQL/MariaDB, whose default collations are not.
_MYSQL: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mysql_engine": "InnoDB",
}

reports = Table(
    "azfed_reports",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("agent_id", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("body_sha256", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # inflight | done
    Column("answer", JSON),
    Column("created_at", Double, nullable=False),
    Column("finished_at", Double),
    **_MYSQL,
)

agents = Table(
    "azfed_agents",
    metadata,
    Column("agent_id", String(64), primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
    Column("last_report_at", Double, nullable=False),
    **_MYSQL,
)

instances = Table(
    "azfed_instances",
    metadata,
    Column("instance_uuid", String(36), primary_key=True),
    Column("agent_id", String(64), nullable=False),
    Column("provider", String(16), nullable=False),
    Column("remote_id", String(255), nullable=False),
    Column("state", String(16), nullable=False),
    Column("ips", JSON, nullable=False),
    Column("observed_at", String(40), nullable=False),
    Column("received_at", Double, nullable=False),
    # EC2's instance and system status checks as of observed_at, the worse of the two
    # (wire.StatusChecks); NULL when that report had none (not running, checks turned off)
    Column("status_checks", String(16)),
    **_MYSQL,
)

orphans = Table(
    "azfed_orphans",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("subject", String(255), primary_key=True),
    Column("detail", JSON, nullable=False),
    Column("first_seen", Double, nullable=False),
    Column("last_seen", Double, nullable=False),
    **_MYSQL,
)

audit = Table(
    "azfed_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("subject", String(255), nullable=False),
    Column("detail", JSON, nullable=False),
    **_MYSQL,
)

# Resources whose samples a sink's backend refused (Gnocchi: a 4xx on the resource or its
# measures), one row each: what `azfed status` shows until the refusals stop and age out.
refused = Table(
    "azfed_dropped",
    metadata,
    Column("sink", String(32), primary_key=True),
    Column("resource_id", String(255), primary_key=True),
    Column("reason", String(32), nullable=False),
    Column("detail", String(500), nullable=False),
    Column("samples", BigInteger, nullable=False),  # dropped since first_seen
    Column("first_seen", Double, nullable=False),
    Column("last_seen", Double, nullable=False),
    **_MYSQL,
)

# The scheduler filter's decisions (its state file keeps only its last few, and loses them when
# nova-scheduler restarts): one row per decision, the filter's own document, kept for
# `DECISIONS_KEEP_S` (history.py) so the Federation panel charts the local load and the bursts
# over that window across restarts of the filter and of the receiver.
decisions = Table(
    "azfed_decisions",
    metadata,
    Column("at", Double, primary_key=True),
    Column("instance_uuid", String(64), primary_key=True),  # "" for a request without one
    Column("doc", JSON, nullable=False),
    **_MYSQL,
)

# Boots' outcomes in the public AZs, as the proxy hosts' drivers report them (POST
# /v1/capacity-events): the scheduler's filter reads them in `id` order and backs off an AZ
# that had no capacity. `key` is the writer's Idempotency-Key: a retried POST adds nothing.
capacity_events = Table(
    "azfed_capacity_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("writer_id", String(64), nullable=False),
    Column("key", String(200), nullable=False),
    Column("body_sha256", String(64), nullable=False),
    Column("instance_uuid", String(36), nullable=False),
    Column("az", String(255), nullable=False),
    Column("flavor", String(255), nullable=False),
    Column("instance_type", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reason", String(1000), nullable=False),
    Column("at", Double, nullable=False),
    Column("received_at", Double, nullable=False),
    UniqueConstraint("writer_id", "key", name="uq_azfed_capacity_events_key"),
    **_MYSQL,
)

# Work that one receiver at a time does for the whole cloud (reconciliation and cleaning): a
# row per kind of work, held by one receiver until `expires_at`, renewed while it lives.
leases = Table(
    "azfed_leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", Double, nullable=False),
    **_MYSQL,
)

# An instance's owner is the agent that first reported it; once the owner reports it in this
# state, another agent may report it (a hand-over: the server now runs in another cloud).
RELEASED = "terminated"

# IN lists are chunked: SQLite allows 32,766 bound parameters, older builds 999.
_CHUNK = 500

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "mysql": "mysql+aiomysql",
    "mariadb": "mysql+aiomysql",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


# what to install for a driver that is missing
_EXTRAS = {"aiomysql": "pip install 'azfed[mysql]'", "asyncpg": "pip install asyncpg"}


class StoreError(AzfedError):
    """The state store cannot be used as configured."""


class KeyConflict(AzfedError):
    """An Idempotency-Key already kept for another body: the writer must use a new key."""


def async_url(url: str) -> str:
    """The async-driver form of a plain SQLAlchemy URL (`sqlite:///x` -> `sqlite+aiosqlite`)."""
    scheme, sep, rest = url.partition("://")
    return f"{_ASYNC_DRIVERS.get(scheme, scheme)}{sep}{rest}"


@dataclass(frozen=True)
class Claim:
    """What the store says about a report key: do the work, or answer without doing it."""

    kind: Literal["new", "done", "inflight", "conflict"]
    answer: dict[str, Any] | None = None


# An instance row rewritten by its agent's newer report, each column set from the row's own
# key. Ownership was checked before the write (`owners`); the condition keeps a concurrent
# report of another agent from taking an instance in between.
_UPDATE_MINE = update(instances).where(
    and_(
        instances.c.instance_uuid == bindparam("w_uuid"),
        or_(instances.c.agent_id == bindparam("w_agent"), instances.c.state == RELEASED),
    )
)


def _instance_row(agent_id: str, inst: dict[str, Any], now: float) -> dict[str, Any]:
    return {
        "instance_uuid": inst["instance_uuid"].lower(),
        "agent_id": agent_id,
        "provider": inst["provider"],
        "remote_id": inst["remote_id"],
        "state": inst["state"],
        "ips": inst["ips"],
        "observed_at": inst["observed_at"],
        "received_at": now,
        "status_checks": inst.get("status_checks"),
    }


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Each SQLite connection commits without an fsync (WAL, synchronous=NORMAL, as SQLite
    advises for WAL): the fsync of each commit was a fifth of a report's time on the
    receiver's path (two commits a report, bench/bench_receiver.py). The file stays
    consistent through any crash; a power cut or an OS crash may take back the last commits
    (never part of one), which the next report of each agent restates: its instances and
    sequence are written again, and a report it had not been answered for is sent again; an
    operator's `release-instance` or a capacity event of those last moments is to be made
    again. Per connection, as SQLite keeps this setting."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Store:
    """Async access to the receiver's tables. `open()` before use, `close()` after."""

    def __init__(self, url: str) -> None:
        self.url = async_url(url)
        self._engine: AsyncEngine | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("Store.open() has not been called")
        return self._engine

    async def open(self) -> None:
        """Connect. SQLite is brought to the schema's head here (one receiver owns the file:
        the default needs no step); any other database must be at head already
        (`azfed receiver db upgrade`), or this raises `migrate.SchemaError`."""
        require_driver(self.url)
        sqlite = self.url.startswith("sqlite")
        if sqlite:
            # Writers wait for each other instead of failing at once with "database is locked".
            args: dict[str, Any] = {"connect_args": {"timeout": 30}}
        else:
            # The server closes idle connections (wait_timeout), HAProxy and Galera fail over.
            args = {"pool_pre_ping": True, "pool_recycle": 3600}
        self._engine = create_async_engine(self.url, **args)
        if sqlite:
            event.listen(self._engine.sync_engine, "connect", _sqlite_pragmas)
        try:
            if not sqlite:
                await migrate.check(self._engine)
                return
            if ":memory:" not in self.url:
                async with self._engine.begin() as conn:
                    await conn.execute(text("PRAGMA journal_mode=WAL"))
            await migrate.upgrade(self._engine)
        except SQLAlchemyError as err:
            where = self.engine.url.render_as_string(hide_password=True)
            why = getattr(err, "orig", None) or err
            await self.close()
            raise StoreError(
                f"the receiver's database {where} cannot be used: {why}; check "
                "[receiver] database_url, and that the database answers to this host"
            ) from err
        except BaseException:
            await self.close()
            raise

    async def _tx(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run `work` in one transaction, again if the database made it a deadlock's victim."""
        return await in_transaction(self.engine, work)

    async def _run(self, statement: Executable) -> CursorResult[Any]:
        """One statement in its own transaction, retried as `_tx` does."""
        return await self._tx(lambda conn: conn.execute(statement))

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        async with self.engine.connect() as conn:
            await conn.execute(select(1))

    # --- dedupe -------------------------------------------------------------------------------

    async def claim(  # noqa: PLR0917 - one report's identity, read as one line
        self, key: str, agent_id: str, seq: int, body_sha256: str, now: float, stale_after: float
    ) -> Claim:
        """Take `key` for this body, or say why not. An in-flight claim older than
        `stale_after` was left by a receiver that died mid-write, and is taken over."""
        row = {
            "key": key,
            "agent_id": agent_id,
            "seq": seq,
            "body_sha256": body_sha256,
            "status": "inflight",
            "created_at": now,
        }
        try:
            await self._run(insert(reports).values(**row))
        except IntegrityError:
            return await self._existing_claim(key, body_sha256, now, stale_after)
        return Claim("new")

    async def _existing_claim(
        self, key: str, body_sha256: str, now: float, stale_after: float
    ) -> Claim:
        async def work(conn: AsyncConnection) -> Claim:
            found = (await conn.execute(select(reports).where(reports.c.key == key))).first()
            if found is None:  # released between our insert and this read: let the agent retry
                return Claim("inflight")
            if found.body_sha256 != body_sha256:
                return Claim("conflict")
            if found.status == "done":
                return Claim("done", found.answer)
            if found.created_at >= now - stale_after:
                return Claim("inflight")
            took = await conn.execute(
                update(reports)
                .where(and_(reports.c.key == key, reports.c.created_at == found.created_at))
                .values(created_at=now)
            )
            return Claim("new" if took.rowcount == 1 else "inflight")

        return await self._tx(work)

    async def release(self, key: str) -> None:
        """Give up an in-flight claim (the write failed), so the agent's retry can run."""
        mine = and_(reports.c.key == key, reports.c.status == "inflight")
        await self._run(delete(reports).where(mine))

    async def finish(
        self, key: str, answer: dict[str, Any], report: dict[str, Any], now: float
    ) -> None:
        """Record the answer, the agent's sequence and the instances' state in one transaction."""

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(
                update(reports)
                .where(reports.c.key == key)
                .values(status="done", answer=answer, finished_at=now)
            )
            await self._bump_agent(conn, report["agent_id"], report["seq"], now)
            rows = [_instance_row(report["agent_id"], i, now) for i in report["instances"]]
            await self._upsert_instances(conn, rows)

        await self._tx(work)

    async def _bump_agent(self, conn: AsyncConnection, agent_id: str, seq: int, now: float) -> None:
        # One statement for a known agent (every report but its first): the read it needed
        # before was a tenth of the report's store time. Reports may land out of order (spool
        # replay): last_seq only ever grows.
        bumped = await conn.execute(
            update(agents)
            .where(agents.c.agent_id == agent_id)
            .values(
                last_seq=case((agents.c.last_seq < seq, seq), else_=agents.c.last_seq),
                last_report_at=now,
            )
        )
        if bumped.rowcount == 0:
            await conn.execute(
                insert(agents).values(agent_id=agent_id, last_seq=seq, last_report_at=now)
            )

    async def _upsert_instances(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        for i in range(0, len(rows), _CHUNK):
            chunk = {r["instance_uuid"]: r for r in rows[i : i + _CHUNK]}
            query = select(instances.c.instance_uuid, instances.c.observed_at).where(
                instances.c.instance_uuid.in_(chunk)
            )
            have = {r.instance_uuid: r.observed_at for r in await conn.execute(query)}
            new = [r for u, r in chunk.items() if u not in have]
            # An older observation arriving late (a replay) must not undo a newer one.
            newer = [r for u, r in chunk.items() if u in have and _later(r["observed_at"], have[u])]
            if new:
                await conn.execute(insert(instances), new)
            if newer:
                # One statement for them all (executemany): an agent restates each instance
                # with a new observed_at in every report, and a statement per instance made
                # this the report's dearest step (50 instances: 20 ms of 22 on SQLite).
                keyed = [
                    {**r, "w_uuid": r["instance_uuid"], "w_agent": r["agent_id"]} for r in newer
                ]
                await conn.execute(_UPDATE_MINE, keyed)

    async def prune(self, before: float) -> int:
        """Forget finished reports older than `before`; returns how many."""

        async def work(conn: AsyncConnection) -> int:
            res = await conn.execute(
                delete(reports).where(
                    and_(reports.c.status == "done", reports.c.finished_at < before)
                )
            )
            await conn.execute(delete(refused).where(refused.c.last_seen < before))
            return int(res.rowcount)

        return await self._tx(work)

    # --- state cache, orphans, audit ----------------------------------------------------------

    async def instance(self, uuid: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            query = select(instances).where(instances.c.instance_uuid == uuid.lower())
            row = (await conn.execute(query)).first()
        return dict(row._mapping) if row is not None else None

    async def owners(self, uuids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """instance_uuid -> (the agent that owns it, its last reported state), for those of
        `uuids` (lower case) that some agent has reported."""
        wanted = list(uuids)
        out: dict[str, tuple[str, str]] = {}
        query = select(instances.c.instance_uuid, instances.c.agent_id, instances.c.state)
        async with self.engine.connect() as conn:
            for i in range(0, len(wanted), _CHUNK):
                chunk = wanted[i : i + _CHUNK]
                rows = await conn.execute(query.where(instances.c.instance_uuid.in_(chunk)))
                out.update({r.instance_uuid: (r.agent_id, r.state) for r in rows})
        return out

    async def release_instance(self, uuid: str, now: float) -> str | None:
        """Forget who owns `uuid` (and its cached state), recording it in the audit trail:
        the next agent to report it owns it. Returns the agent that owned it, or None."""
        uuid = uuid.lower()

        async def work(conn: AsyncConnection) -> str | None:
            query = select(instances).where(instances.c.instance_uuid == uuid)
            row = (await conn.execute(query)).first()
            if row is None:
                return None
            await conn.execute(delete(instances).where(instances.c.instance_uuid == uuid))
            detail = {"agent_id": row.agent_id, "provider": row.provider, "reason": "released"}
            detail["remote_id"] = row.remote_id
            entry = {"at": now, "kind": "released", "subject": uuid, "detail": detail}
            await conn.execute(insert(audit).values(**entry))
            return str(row.agent_id)

        return await self._tx(work)

    async def all_instances(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(select(instances))]

    async def agents(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(select(agents))]

    async def count_reports(self) -> int:
        async with self.engine.connect() as conn:
            return len((await conn.execute(select(reports.c.key))).all())

    async def set_orphans(
        self, found: Iterable[tuple[str, str, dict[str, Any]]], now: float
    ) -> None:
        """Replace the orphan list with `found` (kind, subject, detail), keeping first_seen."""
        found = list(found)

        async def work(conn: AsyncConnection) -> None:
            old = {(r.kind, r.subject): r.first_seen for r in await conn.execute(select(orphans))}
            await conn.execute(delete(orphans))
            rows = [
                {
                    "kind": k,
                    "subject": s,
                    "detail": d,
                    "first_seen": old.get((k, s), now),
                    "last_seen": now,
                }
                for k, s, d in found
            ]
            if rows:
                await conn.execute(insert(orphans), rows)

        await self._tx(work)

    async def orphans(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(select(orphans))]

    async def record(self, kind: str, subject: str, detail: dict[str, Any], now: float) -> None:
        """Append one decision to the audit trail."""
        row = {"at": now, "kind": kind, "subject": subject[:255], "detail": _jsonable(detail)}
        await self._run(insert(audit).values(**row))

    async def audit_trail(
        self, kind: str | None = None, limit: int = 100
    ) -> Sequence[dict[str, Any]]:
        query = select(audit).order_by(audit.c.id.desc()).limit(limit)
        if kind is not None:
            query = query.where(audit.c.kind == kind)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]

    # --- the filter's decisions, kept ---------------------------------------------------------

    async def keep_decisions(self, docs: Sequence[dict[str, Any]], before: float) -> int:
        """Add the decisions of `docs` (the filter's documents, each with its `at`) not kept yet,
        and forget those older than `before`; returns how many were added. Two receivers
        reading the same state file at once add each decision once (the key is the decision's
        time and instance)."""
        rows = {
            (float(d["at"]), str(d.get("instance_uuid") or "")[:64]): d
            for d in docs
            if float(d["at"]) >= before
        }

        async def work(conn: AsyncConnection) -> int:
            await conn.execute(delete(decisions).where(decisions.c.at < before))
            if not rows:
                return 0
            low = min(at for at, _ in rows)
            query = select(decisions.c.at, decisions.c.instance_uuid).where(decisions.c.at >= low)
            have = {(r.at, r.instance_uuid) for r in await conn.execute(query)}
            new = [
                {"at": at, "instance_uuid": uuid, "doc": _jsonable(doc)}
                for (at, uuid), doc in rows.items()
                if (at, uuid) not in have
            ]
            if new:
                await conn.execute(insert(decisions), new)
            return len(new)

        try:
            return await self._tx(work)
        except IntegrityError:  # another receiver added some of them first: they are kept now
            return await self._tx(work)

    async def kept_decisions(self, limit: int, since: float | None = None) -> list[dict[str, Any]]:
        """The newest `limit` kept decisions (at `since` or later), newest first."""
        query = select(decisions.c.doc).order_by(decisions.c.at.desc()).limit(limit)
        if since is not None:
            query = query.where(decisions.c.at >= since)
        async with self.engine.connect() as conn:
            return [dict(r.doc) for r in await conn.execute(query)]

    # --- capacity events ---------------------------------------------------------------------

    async def add_capacity_event(self, row: dict[str, Any], before: float) -> tuple[int, bool]:
        """Keep one event (a row of `capacity_events` without its id), forgetting those
        received before `before`; (its id, whether it was new). A key already kept for the
        same body answers the first id; for another body, raises KeyConflict."""

        async def work(conn: AsyncConnection) -> tuple[int, bool]:
            await conn.execute(
                delete(capacity_events).where(capacity_events.c.received_at < before)
            )
            result = await conn.execute(insert(capacity_events).values(**row))
            key = result.inserted_primary_key
            assert key is not None  # a single-row INSERT always has one
            return int(key[0]), True

        try:
            return await self._tx(work)
        except IntegrityError:
            query = select(capacity_events.c.id, capacity_events.c.body_sha256).where(
                capacity_events.c.writer_id == row["writer_id"],
                capacity_events.c.key == row["key"],
            )
            async with self.engine.connect() as conn:
                kept = (await conn.execute(query)).one()
            if kept.body_sha256 != row["body_sha256"]:
                raise KeyConflict(row["key"]) from None
            return int(kept.id), False

    async def capacity_events(self, after: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """The events with an id above `after`, oldest first, at most `limit`; and the highest
        id kept (0: none)."""
        cols = [c for c in capacity_events.c if c.name not in ("key", "body_sha256")]
        query = (
            select(*cols)
            .where(capacity_events.c.id > after)
            .order_by(capacity_events.c.id)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in await conn.execute(query)]
            last = (await conn.execute(select(func.max(capacity_events.c.id)))).scalar()
        return rows, int(last or 0)

    # --- leases ------------------------------------------------------------------------------

    async def take_lease(self, name: str, holder: str, now: float, ttl_s: float) -> bool:
        """Hold lease `name` until `now + ttl_s` if it is free, expired or already ours; say
        whether we hold it. One conditional UPDATE (or the first INSERT) decides, so two
        receivers asking at once cannot both win."""
        free = or_(leases.c.holder == holder, leases.c.expires_at < now)
        take = (
            update(leases)
            .where(and_(leases.c.name == name, free))
            .values(holder=holder, expires_at=now + ttl_s)
        )
        if (await self._run(take)).rowcount:
            return True
        try:
            await self._run(insert(leases).values(name=name, holder=holder, expires_at=now + ttl_s))
        except IntegrityError:  # someone else holds it (or inserted it just now)
            return False
        return True

    async def drop_lease(self, name: str, holder: str) -> None:
        """Give the lease up (a clean stop), so another receiver takes it at its next try
        instead of after the expiry."""
        mine = and_(leases.c.name == name, leases.c.holder == holder)
        await self._run(delete(leases).where(mine))

    async def lease_holder(self, name: str, now: float) -> str | None:
        """Who holds lease `name` now, or None."""
        query = select(leases.c.holder).where(
            and_(leases.c.name == name, leases.c.expires_at >= now)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else str(row.holder)

    # --- samples a backend refused ------------------------------------------------------------

    async def note_dropped(self, rows: Iterable[dict[str, Any]], now: float) -> None:
        """Add refusals (sink, resource_id, samples, reason, detail) to each resource's row."""
        for r in rows:
            key = {"sink": r["sink"], "resource_id": r["resource_id"]}
            where = and_(refused.c.sink == r["sink"], refused.c.resource_id == r["resource_id"])
            bump = {"reason": r["reason"], "detail": r["detail"][:500], "last_seen": now,
                    "samples": refused.c.samples + r["samples"]}  # fmt: skip
            add = update(refused).where(where).values(**bump)
            if (await self._run(add)).rowcount:
                continue
            row = {**key, **bump, "samples": r["samples"], "first_seen": now}
            try:
                await self._run(insert(refused).values(**row))
            except IntegrityError:  # another receiver inserted it first: add to its row
                await self._run(add)

    async def dropped(self) -> list[dict[str, Any]]:
        """Every resource with refused samples, the most recent refusal first."""
        query = select(refused).order_by(refused.c.last_seen.desc())
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(query)]


def require_driver(url: str) -> None:
    """Raise StoreError, saying what to install, when the URL's async driver is missing."""
    driver = url.partition("://")[0].partition("+")[2]
    if driver and importlib.util.find_spec(driver) is None:
        how = _EXTRAS.get(driver, f"install {driver}")
        raise StoreError(
            f"[receiver] database_url needs the {driver} driver, which is not installed: {how}"
        )


def _later(a: str, b: str) -> bool:
    from datetime import datetime

    return datetime.fromisoformat(a.upper()) > datetime.fromisoformat(b.upper())


def _jsonable(detail: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(detail, default=str))
    return out

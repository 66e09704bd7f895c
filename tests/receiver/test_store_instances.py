"""The instance rows a finished report leaves behind: its new instances inserted, the ones it
saw later than the store rewritten in one statement for all (not one per instance), and the
same rows as that statement per instance gave: an older observation never undoes a newer one,
and an instance another agent owns is never taken unless that agent reported it terminated.
The oracle below is the one-statement-per-instance code; it lives here, not in the store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from azfed.receiver import store as store_mod
from azfed.receiver.store import RELEASED, Store, instances
from sqlalchemy import and_, or_, update
from sqlalchemy.ext.asyncio import AsyncConnection

A, B = "agent-a", "agent-b"
U = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(6)]


def _inst(uuid: str, minute: int, state: str = "running") -> dict[str, Any]:
    return {
        "instance_uuid": uuid.upper() if minute % 2 else uuid,  # stored lower case
        "provider": "ec2",
        "remote_id": f"i-{uuid[-4:]}-{minute}",
        "state": state,
        "ips": {"private": [f"10.0.0.{minute}"], "public": []},
        "observed_at": f"2026-12-03T12:{minute:02d}:00Z",
    }


# (agent, instances) per report, in order: inserts, newer and older restatements, another
# agent's claim on an owned instance (refused) and on a terminated one (taken over)
REPORTS: list[tuple[str, list[dict[str, Any]]]] = [
    (A, [_inst(U[0], 1), _inst(U[1], 1), _inst(U[2], 1)]),
    (A, [_inst(U[0], 3), _inst(U[1], 0), _inst(U[3], 2)]),
    (B, [_inst(U[0], 5), _inst(U[4], 5)]),
    (A, [_inst(U[2], 4, RELEASED), _inst(U[3], 1)]),
    (B, [_inst(U[2], 6), _inst(U[4], 7), _inst(U[5], 7)]),
    (A, [_inst(U[0], 9), _inst(U[1], 9), _inst(U[2], 9), _inst(U[3], 9), _inst(U[5], 9)]),
]


async def _one_statement_per_instance(_: Store, conn: AsyncConnection, rows: list[Any]) -> None:
    have = {
        r.instance_uuid: r.observed_at
        for r in await conn.execute(
            instances.select().where(
                instances.c.instance_uuid.in_([r["instance_uuid"] for r in rows])
            )
        )
    }
    for r in rows:
        if r["instance_uuid"] not in have:
            await conn.execute(instances.insert(), [r])
        elif store_mod._later(r["observed_at"], have[r["instance_uuid"]]):
            mine = or_(instances.c.agent_id == r["agent_id"], instances.c.state == RELEASED)
            await conn.execute(
                update(instances)
                .where(and_(instances.c.instance_uuid == r["instance_uuid"], mine))
                .values(**r)
            )


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    fast, oracle = Store(f"sqlite:///{tmp_path / 'a.db'}"), Store(f"sqlite:///{tmp_path / 'b.db'}")
    await fast.open()
    await oracle.open()
    yield fast, oracle
    await fast.close()
    await oracle.close()


async def _finish_all(store: Store) -> list[dict[str, Any]]:
    for seq, (agent, insts) in enumerate(REPORTS):
        key = f"{agent}:{seq}"
        await store.claim(key, agent, seq, "sha", 1000.0 + seq, 60.0)
        report = {"agent_id": agent, "seq": seq, "instances": insts}
        await store.finish(key, {"accepted": True}, report, 1000.0 + seq)
    return sorted(await store.all_instances(), key=lambda r: r["instance_uuid"])


async def test_the_rows_are_those_one_statement_per_instance_left(
    stores: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, oracle = stores
    got = await _finish_all(fast)
    monkeypatch.setattr(Store, "_upsert_instances", _one_statement_per_instance)
    assert got == await _finish_all(oracle)


async def test_owners_keep_their_instances_and_the_newest_observation_wins(
    stores: tuple[Store, Store],
) -> None:
    rows = {r["instance_uuid"]: r for r in await _finish_all(stores[0])}
    assert set(rows) == set(U)
    # U0: A's, B's claim refused, A's newest (minute 9) kept
    assert (rows[U[0]]["agent_id"], rows[U[0]]["observed_at"]) == (A, "2026-12-03T12:09:00Z")
    # U1: A's minute 0 came after its minute 1 and changed nothing until minute 9
    assert rows[U[1]]["remote_id"].endswith("-9")
    # U2: terminated by A, taken by B (minute 6), then A's later report refused
    assert (rows[U[2]]["agent_id"], rows[U[2]]["observed_at"]) == (B, "2026-12-03T12:06:00Z")
    # U3: A's older minute 1 after minute 2 changed nothing; minute 9 did
    assert rows[U[3]]["observed_at"] == "2026-12-03T12:09:00Z"
    # U5: B's, A's claim refused
    assert rows[U[5]]["agent_id"] == B


async def test_an_agents_sequence_only_grows_and_its_last_report_time_follows(
    stores: tuple[Store, Store],
) -> None:
    """The agent's row (one UPDATE a report, an INSERT for its first): a report replayed
    from the spool with an older seq leaves last_seq as it was and still counts as seen."""
    store = stores[0]
    # (seq sent, when, last_seq after)
    for seq, at, last in ((5, 1000.0, 5), (3, 1001.0, 5), (8, 1002.0, 8), (7, 1003.0, 8)):
        await store.claim(f"{A}:{seq}", A, seq, "sha", at, 60.0)
        report = {"agent_id": A, "seq": seq, "instances": []}
        await store.finish(f"{A}:{seq}", {"accepted": True}, report, at)
        row = next(a for a in await store.agents() if a["agent_id"] == A)
        assert (row["last_seq"], row["last_report_at"]) == (last, at)
    assert [a["agent_id"] for a in await store.agents()] == [A]


async def test_a_sqlite_store_writes_ahead_and_commits_without_an_fsync(
    stores: tuple[Store, Store],
) -> None:
    """Every connection of a file store: WAL, synchronous NORMAL (1), as _sqlite_pragmas
    says why; SQLite's default, FULL (2), fsyncs each commit."""
    async with stores[0].engine.connect() as conn:
        mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
        sync = (await conn.exec_driver_sql("PRAGMA synchronous")).scalar()
    assert (mode, sync) == ("wal", 1)

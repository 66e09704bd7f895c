"""The receiver's state on the bed's real MariaDB: `azfed receiver db upgrade` from empty to
head, the receiver refusing to start on a database that is behind, the store's dedupe, state
and ownership tests run again on MariaDB, and a real InnoDB deadlock retried.

Each test makes its own database (azfed_test_<random>) and drops it; nothing else on the
bed's server is touched. Run beside a running bed with
`AZFED_TESTBED_REUSE=1 .venv/bin/pytest -p no:cacheprovider -q tests/receiver/test_mariadb.py`.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from azfed.cli import main
from azfed.receiver import migrate
from azfed.receiver.store import agents, async_url, metadata
from azfed.receiver.transactions import in_transaction
from click.testing import CliRunner
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from structlog.testing import capture_logs

from testbed.openstack import DB_PASSWORD, HOST, PORTS, OpenStackBed
from testbed.procs import free_port
from tests.receiver.conftest import AGENT, SECRET, ReceiverFactory
from tests.receiver.test_cli import serve_one_report
from tests.receiver.test_contract import (  # noqa: F401 - collected here again, on MariaDB
    test_an_instance_its_owner_reported_terminated_passes_to_the_next_agent,
    test_another_agent_restating_an_instance_gets_403_and_writes_nothing,
)
from tests.receiver.test_hardening import (  # noqa: F401 - collected here again, on MariaDB
    test_the_same_seq_in_two_epochs_is_two_reports_and_a_report_without_one_still_counts,
)
from tests.receiver.test_ingest import (  # noqa: F401 - collected here again, on MariaDB
    test_a_backend_failure_is_503_and_the_retry_succeeds,
    test_a_repeat_of_a_finished_key_gets_the_same_answer_and_writes_nothing,
    test_a_signed_report_is_accepted_written_once_and_cached,
    test_an_older_observation_does_not_overwrite_a_newer_state,
    test_the_same_key_in_flight_gets_409_with_retry_after,
    test_the_same_key_with_another_body_is_refused,
)


def _admin() -> pymysql.Connection[Any]:
    return pymysql.connect(
        host=HOST, port=PORTS["mariadb"], user="root", password=DB_PASSWORD, autocommit=True
    )


@pytest.fixture
def mariadb_url(openstack_bed: OpenStackBed) -> Iterator[str]:
    """A database of this test's own on the bed's MariaDB, dropped afterwards."""
    name = f"azfed_test_{secrets.token_hex(6)}"
    admin = _admin()
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
        yield f"mysql://root:{DB_PASSWORD}@{HOST}:{PORTS['mariadb']}/{name}?charset=utf8mb4"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@pytest.fixture
async def engine(mariadb_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine(async_url(mariadb_url))
    yield eng
    await eng.dispose()


@pytest.fixture
async def upgraded_url(mariadb_url: str, engine: AsyncEngine) -> str:
    await migrate.upgrade(engine)
    return mariadb_url


@pytest.fixture
async def make_receiver(make_receiver: ReceiverFactory, upgraded_url: str) -> ReceiverFactory:
    """conftest's receivers, with their state on MariaDB: the tests imported above use it."""

    async def make(**receiver: Any) -> Any:
        return await make_receiver(**{"database_url": upgraded_url, **receiver})

    return make


def _config(tmp_path: Path, url: str, port: int = 0) -> Path:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir(exist_ok=True)
    cfg = tmp_path / "receiver.toml"
    cfg.write_text(
        f'[receiver]\nhost = "127.0.0.1"\nport = {port}\nsecrets_dir = "{secrets_dir}"\n'
        f'sinks = ["null"]\ndatabase_url = "{url}"\n'
    )
    return cfg


async def _cli(*args: str) -> str:
    result = await asyncio.to_thread(CliRunner().invoke, main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _diff(conn: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(conn), metadata))


async def _tables(engine: AsyncEngine) -> dict[str, tuple[str, dict[str, str]]]:
    """table -> (its collation, column -> data type), from information_schema."""
    async with engine.connect() as conn:
        tables = await conn.exec_driver_sql(
            "SELECT table_name, table_collation FROM information_schema.tables"
            " WHERE table_schema = DATABASE()"
        )
        out: dict[str, tuple[str, dict[str, str]]] = {n: (c, {}) for n, c in tables}
        columns = await conn.exec_driver_sql(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = DATABASE()"
        )
        for table, column, kind in columns:
            out[table][1][column] = kind
    return out


async def test_db_upgrade_brings_an_empty_database_to_head_and_current_says_where_it_is(
    mariadb_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    """`db current` on an empty database says none and behind; `db upgrade` creates every
    table store.py declares (binary utf8mb4 keys, DOUBLE times); a second upgrade does
    nothing; `db current` then says at head."""
    cfg = str(_config(tmp_path, mariadb_url))
    before = await _cli("receiver", "db", "current", "--config", cfg)
    assert "database: none" in before
    assert "behind: run `azfed receiver db upgrade`" in before
    out = await _cli("receiver", "db", "upgrade", "--config", cfg)
    assert out.strip() == f"upgraded the database from empty to {migrate.head()}"
    again = await _cli("receiver", "db", "upgrade", "--config", cfg)
    assert again.strip() == f"the database is at {migrate.head()}: nothing to do"
    now = await _cli("receiver", "db", "current", "--config", cfg)
    assert f"database: {migrate.head()}" in now
    assert "at head" in now
    tables = await _tables(engine)
    assert set(tables) == {*metadata.tables, "alembic_version"}
    for name, table in metadata.tables.items():
        collation, columns = tables[name]
        assert collation == "utf8mb4_bin", name
        assert set(columns) == {c.name for c in table.columns}, name
    assert tables["azfed_reports"][1]["created_at"] == "double"
    async with engine.connect() as conn:  # Alembic's autogenerate finds nothing to change
        assert await conn.run_sync(_diff) == []


async def test_the_receiver_refuses_to_start_on_a_database_not_at_head(
    mariadb_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    """`azfed receiver run` on an empty MariaDB database exits with a message that says to
    run `azfed receiver db upgrade`, and creates nothing."""
    cfg = _config(tmp_path, mariadb_url)
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "azfed.cli", "receiver", "run", "--config", str(cfg)],
        capture_output=True,
        timeout=60,
    )
    err = proc.stderr.decode()
    assert proc.returncode != 0
    assert "run `azfed receiver db upgrade --config FILE`" in err, err[-2000:]
    assert "schema revision none" in err
    assert f":{DB_PASSWORD}@" not in err  # the URL is shown without its password
    assert await _tables(engine) == {}


async def test_a_real_deadlock_is_retried_and_both_transactions_commit(
    upgraded_url: str, engine: AsyncEngine
) -> None:
    """Two transactions update two rows in opposite orders: InnoDB makes one the victim of a
    deadlock (1213); in_transaction runs it again, and both transactions' updates are there."""
    async with engine.begin() as conn:
        await conn.execute(
            insert(agents),
            [{"agent_id": a, "last_seq": 0, "last_report_at": 0.0} for a in ("a", "b")],
        )
    both_hold_one = asyncio.Barrier(2)
    calls: Counter[str] = Counter()

    def bump(first: str, second: str) -> Callable[[AsyncConnection], Awaitable[None]]:
        async def work(conn: AsyncConnection) -> None:
            calls[first] += 1
            for n, agent in enumerate((first, second)):
                step = update(agents).where(agents.c.agent_id == agent)
                await conn.execute(step.values(last_seq=agents.c.last_seq + 1))
                if n == 0 and calls[first] == 1:  # the first try waits for the other's lock
                    await asyncio.wait_for(both_hold_one.wait(), 30)

        return work

    with capture_logs() as logs:
        async with asyncio.timeout(60):
            await asyncio.gather(
                in_transaction(engine, bump("a", "b")), in_transaction(engine, bump("b", "a"))
            )
    assert sorted(calls.values()) == [1, 2]
    retried = [e for e in logs if e["event"] == "store.retried"]
    assert [(e["attempt"], e["code"]) for e in retried] == [(1, 1213)]
    async with engine.connect() as conn:
        seqs = dict((await conn.execute(select(agents.c.agent_id, agents.c.last_seq))).all())
    assert seqs == {"a": 2, "b": 2}


async def test_a_lock_wait_timeout_is_retried_a_bounded_number_of_times_then_raised(
    upgraded_url: str, engine: AsyncEngine
) -> None:
    """A row held by another transaction for longer than the lock wait (1205, every attempt):
    in_transaction tries `attempts` times in all, then lets the error through."""
    async with engine.begin() as conn:
        await conn.execute(insert(agents).values(agent_id="a", last_seq=0, last_report_at=0.0))
    tries = 0

    async def work(conn: AsyncConnection) -> None:
        nonlocal tries
        tries += 1
        await conn.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 1")
        await conn.execute(update(agents).values(last_seq=1))

    async with engine.connect() as holder, holder.begin():
        await holder.execute(select(agents).with_for_update())
        with capture_logs() as logs, pytest.raises(OperationalError) as err:
            await in_transaction(engine, work, attempts=2)
    assert err.value.orig is not None
    assert err.value.orig.args[0] == 1205
    assert tries == 2
    assert [(e["attempt"], e["code"]) for e in logs if e["event"] == "store.retried"] == [(1, 1205)]


async def test_an_error_a_retry_cannot_clear_is_raised_at_once(engine: AsyncEngine) -> None:
    """A real MariaDB error that is not a deadlock or a lock wait (1146: no such table) is
    not retried."""
    tries = 0

    async def work(conn: AsyncConnection) -> None:
        nonlocal tries
        tries += 1
        await conn.execute(select(agents))

    with capture_logs() as logs, pytest.raises(ProgrammingError) as err:
        await in_transaction(engine, work)
    assert err.value.orig is not None
    assert err.value.orig.args[0] == 1146
    assert tries == 1
    assert [e for e in logs if e["event"] == "store.retried"] == []


def test_receiver_run_on_an_upgraded_database_serves_and_status_reads_it(
    upgraded_url: str, tmp_path: Path
) -> None:
    """After `db upgrade`, `azfed receiver run` on MariaDB says READY=1, accepts a signed
    report and stops on SIGTERM; `azfed status --json` reads the agent and its instances
    back from MariaDB."""
    port = free_port()
    cfg = _config(tmp_path, upgraded_url, port)
    (tmp_path / "secrets" / f"agents_{AGENT}").write_bytes(SECRET)
    status = serve_one_report(cfg, port, tmp_path)
    assert [(a["agent_id"], a["last_seq"]) for a in status["agents"]] == [(AGENT, 42)]
    assert status["instances"] == {"running": 1, "stopped": 1}

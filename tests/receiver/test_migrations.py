"""The receiver's schema under Alembic, on SQLite (the default): the store brings a new file
to head at open, the head equals the tables store.py declares, a file made before migrations
is taken over, and `azfed receiver db upgrade|current` answer. The same on MariaDB is in
test_mariadb.py."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from azfed.cli import main
from azfed.receiver import migrate
from azfed.receiver.store import Store, StoreError, agents, metadata
from click.testing import CliRunner
from sqlalchemy import Connection, insert, text
from sqlalchemy.ext.asyncio import create_async_engine
from structlog.testing import capture_logs


def _diff(conn: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(conn), metadata))


def _initial_tables(conn: Connection) -> None:
    """The tables of revision 0001 (those an older azfed's create_all made), unstamped."""
    cfg = Config()
    cfg.set_main_option("script_location", migrate.SCRIPTS)
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, migrate.INITIAL)
    conn.execute(text("DROP TABLE alembic_version"))


async def test_a_new_sqlite_file_is_brought_to_head_equal_to_the_declared_tables(
    tmp_path: Path,
) -> None:
    """Store.open on a new file runs the migrations (no step for the default), and what they
    create is what store.py declares: Alembic's autogenerate finds nothing to add."""
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    await store.open()
    try:
        assert await migrate.current(store.engine) == migrate.head()
        async with store.engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await store.close()


async def test_a_sqlite_file_made_before_migrations_is_taken_over_with_its_rows(
    tmp_path: Path,
) -> None:
    """A file an older azfed made with create_all (no alembic_version) is stamped at the
    initial revision and upgraded; its rows stay."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'state.db'}"
    engine = create_async_engine(url)
    # the tables azfed had before migrations (revision 0001's); later revisions add the rest
    async with engine.begin() as conn:
        await conn.run_sync(_initial_tables)
        await conn.execute(insert(agents).values(agent_id="a", last_seq=7, last_report_at=1.0))
    await engine.dispose()
    store = Store(url)
    await store.open()
    try:
        assert await migrate.current(store.engine) == migrate.head()
        assert [a["last_seq"] for a in await store.agents()] == [7]
    finally:
        await store.close()


async def test_a_database_behind_head_is_refused_with_what_to_run(tmp_path: Path) -> None:
    """migrate.check (what Store.open runs on MySQL) names the revisions and the command."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    try:
        with pytest.raises(migrate.SchemaError) as err:
            await migrate.check(engine)
    finally:
        await engine.dispose()
    assert "at schema revision none" in str(err.value)
    assert f"this azfed needs {migrate.head()}" in str(err.value)
    assert "run `azfed receiver db upgrade --config FILE`" in str(err.value)


async def test_db_upgrade_and_current_on_sqlite(tmp_path: Path) -> None:
    """`azfed receiver db current` says behind, `db upgrade` upgrades, then at head."""
    cfg = tmp_path / "receiver.toml"
    (tmp_path / "secrets").mkdir()
    cfg.write_text(
        f'[receiver]\nsecrets_dir = "{tmp_path / "secrets"}"\nsinks = ["null"]\n'
        f'database_url = "sqlite:///{tmp_path / "state.db"}"\n'
    )

    async def cli(*args: str) -> str:
        result = await asyncio.to_thread(CliRunner().invoke, main, [*args, "--config", str(cfg)])
        assert result.exit_code == 0, result.output
        return result.output

    assert "behind: run `azfed receiver db upgrade`" in await cli("receiver", "db", "current")
    upgraded = await cli("receiver", "db", "upgrade")
    assert upgraded.strip() == f"upgraded the database from empty to {migrate.head()}"
    assert "at head" in await cli("receiver", "db", "current")


async def test_a_database_a_newer_azfed_upgraded_is_served_as_it_is(tmp_path: Path) -> None:
    """Expand-then-contract: a revision this azfed does not know is a newer one's, whose
    schema still serves this version; the store opens on it, changes nothing, and says so."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'state.db'}"
    store = Store(url)
    await store.open()
    async with store.engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    await store.close()
    with capture_logs() as logs:
        await store.open()
        try:
            await migrate.check(store.engine)
            assert await migrate.current(store.engine) == "f00d"
            assert await store.agents() == []
        finally:
            await store.close()
    newer = [e for e in logs if e["event"] == "store.schema_newer"]
    assert [e["revision"] for e in newer] == ["f00d", "f00d"]


async def test_a_database_whose_driver_is_not_installed_says_what_to_install() -> None:
    """A URL whose async driver is missing (asyncpg is no dependency of azfed) stops the store
    with the key and what to install, not an import traceback."""
    with pytest.raises(StoreError) as err:
        await Store("postgresql://azfed:pw@db.example/azfed").open()
    assert str(err.value) == (
        "[receiver] database_url needs the asyncpg driver, which is not installed: "
        "pip install asyncpg"
    )


@pytest.mark.parametrize(
    "command",
    [["db", "upgrade"], ["release-instance", "0b7e6f4c-7d3a-4f7e-9a51-2f0c8d1e4b6a"]],
)
def test_a_command_on_a_database_it_cannot_reach_says_why_without_a_traceback(
    tmp_path: Path, command: list[str]
) -> None:
    """`azfed receiver db upgrade` or `release-instance` on a MySQL URL where nothing listens
    exits 1 with the driver's reason, and never prints the password."""
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "receiver.toml"
    (tmp_path / "secrets").mkdir()
    cfg.write_text(
        f'[receiver]\nsecrets_dir = "{tmp_path / "secrets"}"\nsinks = ["null"]\n'
        f'database_url = "mysql://azfed:hunter2@127.0.0.1:{port}/azfed"\n'
    )
    result = CliRunner().invoke(main, ["receiver", *command, "--config", str(cfg)])
    assert result.exit_code == 1, result.output
    assert "azfed: " in result.output
    assert "Can't connect" in result.output
    assert "hunter2" not in result.output
    assert "Traceback" not in result.output


async def test_a_database_that_does_not_answer_stops_the_store_with_what_to_check() -> None:
    """The receiver's start on an unreachable MySQL: an error that names the URL without its
    password, the driver's reason and what to check (azfed receiver run prints it)."""
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreError) as err:
        await Store(f"mysql://azfed:hunter2@127.0.0.1:{port}/azfed").open()
    assert f"database mysql+aiomysql://azfed:***@127.0.0.1:{port}/azfed" in str(err.value)
    assert "Can't connect" in str(err.value)
    assert "check [receiver] database_url" in str(err.value)

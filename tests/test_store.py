"""The store: private files, WAL, migrations by Alembic, and the SQLite stores from
before Alembic brought to its baseline."""

from __future__ import annotations

import json
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest
from conftest import (
    QUIET_POLICY,
    Workdeck,
    both_stores,
    short_tmp,
    start_workdeck,
    stop_workdeck,
)
from sqlalchemy import text
from sqlmodel import SQLModel

from backend.store import (
    models,  # noqa: F401 - registers the tables on SQLModel.metadata
    schema,
)
from backend.store.db import Store, StoreError, masked
from backend.store.legacy import LATEST, MIGRATIONS, migrate
from wire.datadir import DataDir


def test_data_dir_is_private(tmp_path):
    data_dir = DataDir(tmp_path / "deck")
    data_dir.ensure()
    assert stat.S_IMODE(data_dir.root.stat().st_mode) == 0o700
    store = Store(data_dir.database)
    store.close()
    assert stat.S_IMODE(data_dir.database.stat().st_mode) == 0o600


def test_wal_and_busy_timeout(tmp_path):
    store = Store(tmp_path / "w.db")
    with store.read() as session:
        mode = session.connection().exec_driver_sql("PRAGMA journal_mode").scalar()
        timeout = session.connection().exec_driver_sql("PRAGMA busy_timeout").scalar()
    assert mode == "wal" and timeout >= 5000
    store.close()


def test_schema_matches_the_models(tmp_path):
    store = Store(tmp_path / "s.db")
    store.close()
    conn = sqlite3.connect(tmp_path / "s.db")
    for table in SQLModel.metadata.sorted_tables:
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table.name})")}
        assert columns == {c.name for c in table.columns}, table.name


@pytest.mark.parametrize("start", range(LATEST))
def test_a_database_from_any_older_version_opens(tmp_path, start):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=start)
    if start >= 1:
        # The column was renamed once (one name per idea): as it was called then.
        renamed = next(version for version, (_about, steps) in enumerate(MIGRATIONS, 1)
                       if any("is_default TO" in step for step in steps))
        default = '"default"' if start >= renamed else "is_default"
        conn.execute(f"INSERT INTO pool (name, description, {default}, created_at) "
                     "VALUES ('Old Pool', 'kept', 0, '2025-01-01 00:00:00')")
    conn.close()
    store = Store(path)
    store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
        (schema.HEAD,)]
    # A Workdeck from before Alembic refuses it as newer than itself.
    assert conn.execute("PRAGMA user_version").fetchone()[0] > LATEST
    if start >= 1:
        assert conn.execute("SELECT description FROM pool WHERE name = 'Old Pool'"
                            ).fetchone() == ("kept",)


@both_stores
def test_the_schema_is_what_the_models_declare(make_store):
    """Every table, column and index of the models is in the store Alembic made, and
    nothing else: a model changed without a revision fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    store = make_store()
    with store.read() as session:
        differences = compare_metadata(MigrationContext.configure(session.connection()),
                                       SQLModel.metadata)
    assert differences == []


@both_stores
def test_a_newer_database_is_refused_clearly(make_store, database, tmp_path):
    store = make_store()
    with store.write() as session:
        session.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
        session.execute(text("INSERT INTO setting (key, value) VALUES ('kept', 'yes')"))
    with pytest.raises(StoreError, match=r"revision f00d, which this Workdeck does not know.*"
                                         r"upgrade Workdeck"):
        Store(database or tmp_path / "store.db")
    with store.read() as session:
        assert session.execute(text("SELECT value FROM setting")).all() == [("yes",)]


def test_a_store_from_before_alembic_is_refused_by_workdecks_before_it(tmp_path):
    """A Workdeck from before Alembic reads PRAGMA user_version: it says "newer"."""
    Store(tmp_path / "s.db").close()
    conn = sqlite3.connect(tmp_path / "s.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] > LATEST


def test_a_database_that_is_not_postgresql_or_not_there_is_refused_clearly(postgres):
    with pytest.raises(StoreError, match=r"SQLite .* or PostgreSQL, not 'mysql'"):
        Store("mysql://me@db/deck")
    with pytest.raises(StoreError, match="not a database URL"):
        Store("postgresql://me@db:port/deck")
    gone = f"postgresql://workdeck:sesame@127.0.0.1:{postgres.port}/missing"
    with pytest.raises(StoreError, match=r"Cannot use the database postgresql://workdeck:\*\*\*"
                                         r"@127.0.0.1:\d+/missing: .*missing"):
        Store(gone)


def test_a_database_url_is_shown_without_its_password():
    assert masked("postgresql://ops:s3cret@db.example:5432/deck") == \
        "postgresql://ops:***@db.example:5432/deck"
    assert masked("postgresql://ops@db/deck?password=s3cret&sslmode=require") == \
        "postgresql://ops@db/deck?password=***&sslmode=require"
    assert "s3cret" not in masked("postgresql+psycopg://ops:s3cret@db/deck")


def test_head_is_the_newest_revision():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(schema.SCRIPTS))
    assert ScriptDirectory.from_config(config).get_heads() == [schema.HEAD]


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="Cannot open the database"):
        Store(path)
    assert path.read_bytes() == b"this is not sqlite" * 100


def test_renamed_columns_keep_their_values(tmp_path):
    """One name per idea renamed columns in place: a store from before keeps every value,
    and a step that went well keeps why its worker was chosen, under its own name."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    first = next(version for version, (_about, steps) in enumerate(MIGRATIONS, 1)
                 if any("status TO check_status" in step for step in steps))
    migrate(conn, target=first - 1)
    then = "'2025-01-01 00:00:00'"
    conn.execute("INSERT INTO worker (name, host, created_at, status, presented_key, "
                 f"trust_next_key) VALUES ('w', 'h', {then}, 'warning', 'KEY', 1)")
    conn.execute(f"INSERT INTO pool (name, is_default, created_at) VALUES ('P', 1, {then})")
    conn.execute("INSERT INTO run (runbook, environment, definition, created_at) "
                 f"VALUES ('r', 'e', '{{}}', {then})")
    conn.execute("INSERT INTO run_step (run_id, position, name, worker, status, reason) "
                 "VALUES (1, 1, 'a', 'w', 'succeeded', 'w: healthy, the fewest'), "
                 "(1, 2, 'b', 'w', 'failed', 'exit status 1'), "
                 "(1, 3, 'c', '', 'skipped', 'not run: the run failed')")
    conn.execute("INSERT INTO lease (worker_id, run_id, position, since, reason, step) "
                 f"VALUES (1, 1, 2, {then}, 'w: healthy', 'b')")
    conn.execute("INSERT INTO pool_sample (pool_id, at, leased, capacity, queued) "
                 f"VALUES (1, {then}, 3, 4, 1)")
    conn.close()
    Store(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT check_status, presented_host_key, trust_host_key FROM worker"
                        ).fetchone() == ("warning", "KEY", 1)
    assert conn.execute('SELECT "default" FROM pool').fetchone() == (1,)
    assert conn.execute("SELECT position, reason, worker_reason FROM run_step ORDER BY position"
                        ).fetchall() == [(1, "", "w: healthy, the fewest"),
                                         (2, "exit status 1", ""),
                                         (3, "not run: the run failed", "")]
    assert conn.execute("SELECT step_name, worker_reason FROM lease").fetchone() == \
        ("b", "w: healthy")
    assert conn.execute("SELECT leased, capacity, queued FROM usage_sample").fetchone() == \
        (3, 4, 1)


BEFORE_ALEMBIC = Path(__file__).parent / "data" / "store-before-alembic.sql"


def test_a_data_directory_made_before_alembic_upgrades_in_place_on_first_start():
    """The store that the last Workdeck before Alembic made (its runs, logs, fleet and
    people, tests/data) opens in a server of today: nothing is lost, and it goes on."""
    root = short_tmp("wd-upgrade-")
    home = root / "home"
    home.mkdir()
    data_dir = DataDir(root / "data")
    data_dir.ensure()
    with sqlite3.connect(data_dir.database) as conn:
        conn.executescript(BEFORE_ALEMBIC.read_text())
    data_dir, process = start_workdeck(root, home)
    deck = Workdeck(data_dir, home, process)
    try:
        with deck.client() as client:  # the machine's load must not make it a warning
            client.put("/api/policy", QUIET_POLICY)
        # Checked again under that policy: a first check on a loaded machine may have found
        # the built-in worker in warning, which it stays for the policy's hour.
        assert deck.cli("check", "--worker", "built-in-worker").code == 0
        runs = json.loads(deck.cli("runs", "list", "--json").out)
        assert [(r["id"], r["status"], r["environment"]) for r in runs] == [
            (2, "failed", "Test"), (1, "failed", "Test")]
        log = deck.cli("runs", "log", "1").out
        assert "hello line 50" in log and "to stderr" in log and "failing" in log
        assert "bonjour line 1" in deck.cli("runs", "log", "2").out
        workers = {w["name"]: w for w in json.loads(deck.cli("worker", "list", "--json").out)}
        assert workers["w-web-01"]["pools"] == ["Web Pool"]
        assert deck.cli("env", "list").out.split() == ["Staging", "(four", "eyes)", "Test"]
        people = deck.cli("user", "list").out
        assert "alice" in people and "operator on Test" in people
        with deck.client() as client:
            assert client.get("/api/server")["store"]["kind"] == "sqlite"
        # It goes on: a run launched now is the next one, its log kept as before.
        assert deck.cli("run", "Upgrade check", "--env", "Test", "--follow").code == 1
        assert "hello line 50" in deck.cli("runs", "log", "3").out
        with sqlite3.connect(data_dir.database) as conn:
            assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
                (schema.HEAD,)]
    finally:
        slow = stop_workdeck(process, data_dir)
        shutil.rmtree(root, ignore_errors=True)
    assert not slow, slow


def test_server_status_names_the_store_with_its_password_hidden(postgres):
    url = postgres.database().replace("workdeck@", "workdeck:sesame@")
    root = short_tmp("wd-pg-status-")
    home = root / "home"
    home.mkdir()
    data_dir, process = start_workdeck(root, home, database=url)
    deck = Workdeck(data_dir, home, process, url)
    try:
        said = deck.cli("server", "status").out
        shown = url.replace("sesame", "***")
        assert f"Store: PostgreSQL at {shown}." in said
        status = json.loads(deck.cli("server", "status", "--json").out)
        assert status["store"] == {"kind": "postgresql", "where": shown}
        assert "sesame" not in said + json.dumps(status) + deck.log()
        assert not (data_dir.root / "workdeck.db").exists()  # nothing kept beside it
    finally:
        slow = stop_workdeck(process, data_dir)
        shutil.rmtree(root, ignore_errors=True)
    assert not slow, slow


@pytest.mark.parametrize("store_kind", ["postgresql"], indirect=True)
async def test_log_lines_go_to_postgresql_as_a_copy_stream(run_store):
    """Not a statement per row: the rows of a flush are one binary COPY, of text stored
    with lz4."""
    from sqlalchemy import event

    from backend.runs.loghub import LogHub
    from backend.runs.logstore import RunLog, read

    statements: list[str] = []
    event.listen(run_store._writer, "before_cursor_execute",
                 lambda _c, _cur, sql, *_rest: statements.append(sql))
    log = RunLog(run_store, LogHub(), 1, secrets=[])
    log.start()
    for n in range(1, 5001):
        await log.output(1, "w", "stdout", f"line {n}\n".encode())
    assert await log.close() is True
    assert not [sql for sql in statements if "INSERT INTO log_chunk" in sql]
    texts = [line for chunk in read(run_store, 1) for line in chunk["lines"].splitlines()]
    assert [text.split("\t")[-1] for text in texts] == [f"line {n}" for n in range(1, 5001)]
    with run_store.read() as session:  # compressed with lz4 (revision 0002), not pglz
        assert session.execute(text(
            "SELECT attcompression FROM pg_attribute WHERE attname = 'lines' "
            "AND attrelid = 'log_chunk'::regclass")).scalar() == "l"


@pytest.mark.parametrize("store_kind", ["postgresql"], indirect=True)
def test_a_second_server_on_a_database_needs_a_node_name_of_its_own(workdeck, tmp_path):
    """Several servers share a database as nodes (tests/test_ha.py), each under its own
    name: a second one here under the same (default) name is refused."""
    import shutil
    import subprocess
    import sys

    (tmp_path / "other").mkdir(mode=0o700)
    shutil.copy2(workdeck.data_dir.secret_key, tmp_path / "other" / "secret.key")
    second = subprocess.run(
        [sys.executable, "-m", "console.cli", "--data-dir", str(tmp_path / "other"),
         "server", "--database", workdeck.database],
        capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert "A node named" in second.stderr and "is alive on" in second.stderr
    assert "give this server another name (--node NAME)" in second.stderr
    assert "Traceback" not in second.stderr
    assert workdeck.cli("runs", "list").code == 0  # the first serves on

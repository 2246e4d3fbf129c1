"""The SQLite store: private files, WAL, migrations from every older version."""

from __future__ import annotations

import sqlite3
import stat

import pytest
from sqlmodel import SQLModel

from backend.store import models  # noqa: F401 - registers the tables on SQLModel.metadata
from backend.store.db import Store, StoreError
from backend.store.migrations import LATEST, MIGRATIONS, SchemaTooNewError, migrate
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
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
    if start >= 1:
        assert conn.execute("SELECT description FROM pool WHERE name = 'Old Pool'"
                            ).fetchone() == ("kept",)


def test_a_newer_database_is_refused_clearly(tmp_path):
    path = tmp_path / "new.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    with pytest.raises(SchemaTooNewError, match="upgrade Workdeck"):
        migrate(conn)


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

"""`workdeck db copy`: an SQLite store moved into PostgreSQL whole, or not at all."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import Workdeck, short_tmp, start_workdeck, stop_workdeck
from sqlalchemy import func, select, text
from sqlmodel import SQLModel

from backend.store import models  # noqa: F401 - registers the tables on SQLModel.metadata
from backend.store.db import Store
from backend.store.models import (
    Decision,
    Delivery,
    HostKey,
    Lease,
    Node,
    Notification,
    Provisioner,
    Run,
    RunRequest,
    Schedule,
    StepWait,
    Worker,
)
from console.cli import cli
from wire.datadir import DataDir

BEFORE_ALEMBIC = Path(__file__).parent / "data" / "store-before-alembic.sql"


def cli_in(data_dir: DataDir, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["--data-dir", str(data_dir.root), *args])


@pytest.fixture
def full_data_dir():
    """A data directory whose store has rows in every table: the store the last Workdeck
    before Alembic made (runs, logs, fleet, people), and a row of each kind it lacked."""
    root = short_tmp("wd-copy-")
    data_dir = DataDir(root / "data")
    data_dir.ensure()
    with sqlite3.connect(data_dir.database) as conn:
        conn.executescript(BEFORE_ALEMBIC.read_text())
    store = Store(data_dir.database)
    with store.write() as session:
        worker = session.exec(select(Worker).where(Worker.name == "w-web-01")).scalar_one()
        run = session.get(Run, 1)
        session.add(HostKey(worker_id=worker.id, public_key="ssh-ed25519 AAAA kept",
                            fingerprint="SHA256:kept", trusted_by="alice"))
        session.add(Lease(worker_id=worker.id, run_id=run.id, position=1, step_name="Say",
                          pool="Web Pool", orphan="its processes may still run"))
        session.add(Decision(run_id=run.id, position=2, action="retry", actor="alice",
                             note="once more, with feeling"))
        session.add(Provisioner(pool_id=2, create_command="make-worker",
                                destroy_command="unmake-worker", max_workers=3))
        session.add(Node(name="ops-1", address="unix:/srv/deck/server.sock", host="ops-1",
                         pid=4242, version="0.1.0", draining=True, lease_s=3.0))
        session.add(RunRequest(run_id=run.id, action="approve", actor="bob", person="bob",
                               note="asked on another node"))
        session.add(StepWait(node="ops-1", run_id=run.id, position=3, step_name="Later",
                             pool="Web Pool", avoid='["w-web-01"]'))
        session.add(Schedule(name="nightly", runbook="Deploy", environment="Production",
                             cron="0 3 * * 1-5", timezone="Europe/Berlin",
                             variables='{"version": "1.2"}', person="alice",
                             actor="alice (laptop)", missed="once", next_at=run.created_at,
                             last_outcome="2026-12-04 03:00 CET: launched run 1",
                             last_run_id=run.id))
        run.schedule, run.cause = "nightly", "schedule nightly (2026-12-04 03:00 CET)"
        session.add(run)
        notification = Notification(name="ops", url="sealed-url", format="slack",
                                    events='["run-failed"]', environments='["Production"]',
                                    pools="[]", secret="sealed-secret", actor="alice")
        session.add(notification)
        session.flush()
        session.add(Delivery(notification_id=notification.id, event="run-failed",
                             subject="run 1", body='{"text": "run 1 failed"}',
                             status="delivered", attempts=2, answer="200 OK in 12 ms"))
    store.close()
    yield data_dir


def every_row(store: Store) -> dict[str, list[tuple]]:
    with store.read() as session:
        connection = session.connection()
        return {table.name: [tuple(row) for row in connection.execute(
            select(table).order_by(*table.primary_key.columns))]
            for table in SQLModel.metadata.sorted_tables}


def test_db_copy_moves_every_row_into_postgresql(full_data_dir, postgres):
    url = postgres.database()
    result = cli_in(full_data_dir, "db", "copy", "--to", url)
    assert result.exit_code == 0, result.output
    assert "each table's rows counted on both sides" in result.stdout
    source, target = Store(full_data_dir.database), Store(url)
    try:
        before, after = every_row(source), every_row(target)
        assert all(before.values()), [name for name, rows in before.items() if not rows]
        assert after == before  # every row of every table, value for value
        # Numbering goes on after the copied rows.
        with target.write() as session:
            session.add(Run(runbook="r", environment="Test", definition="{}"))
        with target.read() as session:
            assert session.exec(select(func.max(Run.id))).scalar_one() == \
                max(row[0] for row in before["run"]) + 1
    finally:
        source.close()
        target.close()

    # A second copy into the same database is refused: it is not empty any more.
    again = cli_in(full_data_dir, "db", "copy", "--to", url)
    assert again.exit_code == 1
    assert "is not empty: it already holds Workdeck's data" in again.stderr
    assert "Traceback" not in again.output


def test_a_server_on_the_copy_shows_what_the_sqlite_store_held(full_data_dir, postgres):
    url = postgres.database()
    assert cli_in(full_data_dir, "db", "copy", "--to", url).exit_code == 0
    root = full_data_dir.root.parent
    home = root / "home"
    home.mkdir()
    full_data_dir.database.rename(full_data_dir.root / "moved-away.db")  # not read again
    data_dir, process = start_workdeck(root, home, database=url)
    deck = Workdeck(data_dir, home, process, url)
    try:
        runs = json.loads(deck.cli("runs", "list", "--json").out)
        assert [r["id"] for r in runs] == [2, 1]
        assert "hello line 50" in deck.cli("runs", "log", "1").out
        assert "alice" in deck.cli("user", "list").out
    finally:
        slow = stop_workdeck(process, data_dir)
    assert not slow, slow


def test_db_copy_refuses_a_running_server_and_a_foreign_database(full_data_dir, postgres,
                                                                   workdeck):
    url = postgres.database()
    # A server on the source: refused, nothing copied.
    running = cli_in(workdeck.data_dir, "db", "copy", "--to", url)
    assert running.exit_code == 1
    assert "server is already running" in running.stderr and "stop it first" in running.stderr
    # A database holding something else: refused, left as it was.
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE invoices (id int)")
    foreign = cli_in(full_data_dir, "db", "copy", "--to", url)
    assert foreign.exit_code == 1
    assert "not Workdeck's (invoices)" in foreign.stderr
    with psycopg.connect(url) as conn:
        assert conn.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                                 ).text).fetchone() == (1,)
    # Not a URL, or no store: one sentence each.
    assert "takes a database URL" in cli_in(full_data_dir, "db", "copy", "--to", "x").stderr
    empty = DataDir(full_data_dir.root.parent / "empty")
    empty.ensure()
    assert "no store" in cli_in(empty, "db", "copy", "--to", url).stderr

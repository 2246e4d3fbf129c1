"""The schema's revision and its migrations, by Alembic, for SQLite and PostgreSQL alike.

A store keeps its revision in the `alembic_version` table; the steps are in
alembic/versions/, one file per revision, and never change once released: add a new
revision instead. SQLite stores made before Alembic kept their version in
`PRAGMA user_version`: the steps that made them (legacy.py) bring them to the baseline
revision, which is then recorded, once.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, text

from backend.store import legacy

# The newest revision this code knows; a store already there opens without loading
# Alembic (tests/test_store.py checks it is the scripts' head).
HEAD = "0008"
BASELINE = "0001"
SCRIPTS = Path(__file__).with_name("alembic")
# An SQLite store that Alembic manages says so in user_version as well, so that a
# Workdeck from before Alembic refuses it as newer than itself instead of failing.
ALEMBIC_MANAGED = 1000


class SchemaTooNewError(Exception):
    """The database was written by a newer Workdeck than this one."""


def revision(connection: Connection) -> str | None:
    """The store's revision (None: Alembic never wrote to it)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine) -> list[str]:
    """Bring the store to HEAD; return the revisions applied (oldest first)."""
    with engine.connect() as connection:
        current = revision(connection)
        connection.rollback()
        if current == HEAD:
            return []
        sqlite = engine.dialect.name == "sqlite"
        raw = connection.connection.driver_connection
        before = legacy.schema_version(raw) if sqlite and current is None else 0
        connection.rollback()
        if before > legacy.LATEST:
            raise SchemaTooNewError(
                f"The database is at schema version {before}, newer than this Workdeck "
                "understands; upgrade Workdeck to open it.")
        import logging

        # Alembic says which revisions it applies (INFO), and each plugin it loads.
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
        from alembic import command
        from alembic.config import Config
        from alembic.script import ScriptDirectory
        from alembic.util import CommandError

        config = Config()
        config.set_main_option("script_location", str(SCRIPTS))
        config.attributes["connection"] = connection
        scripts = ScriptDirectory.from_config(config)
        if current is not None:
            try:
                scripts.get_revision(current)
            except CommandError:
                raise SchemaTooNewError(
                    f"The database is at schema revision {current}, which this Workdeck "
                    f"does not know (it knows up to {HEAD}): a newer Workdeck wrote it; "
                    "upgrade Workdeck to open it.") from None
        if before:
            legacy.migrate(raw)
            with connection.begin():
                for statement in legacy.TO_BASELINE:
                    connection.exec_driver_sql(statement)
            command.stamp(config, BASELINE)
            connection.commit()
            current = BASELINE
        applied = [script.revision for script in scripts.iterate_revisions(HEAD, current)]
        if sqlite:
            # A table SQLite changes by copying it (Alembic's batch mode) is dropped at the
            # end: with foreign keys on, that drop would delete every row referring to it
            # (a run's steps and log, ON DELETE CASCADE). Off outside a transaction only.
            connection.exec_driver_sql("PRAGMA foreign_keys = OFF")
        try:
            command.upgrade(config, "head")
            if connection.in_transaction():
                connection.commit()
        finally:
            if sqlite:
                if connection.in_transaction():
                    connection.rollback()
                connection.exec_driver_sql("PRAGMA foreign_keys = ON")
        if sqlite:
            connection.exec_driver_sql(f"PRAGMA user_version = {ALEMBIC_MANAGED}")
            connection.commit()
        return applied[::-1]

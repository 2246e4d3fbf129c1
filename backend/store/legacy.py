"""The SQLite schema's steps from before Alembic, frozen: never add to them.

Until Alembic, an SQLite store kept its version in `PRAGMA user_version` and these steps
moved it forward one version at a time. A store from then is brought to LATEST by them,
which is the schema of Alembic's baseline revision (schema.py does both). Steps are
plain SQL so they stay readable.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: list[tuple[str, list[str]]] = [
    (
        "workers, pools, host keys, health checks, audit log, settings",
        [
            """CREATE TABLE worker (
                id INTEGER PRIMARY KEY,
                name VARCHAR NOT NULL UNIQUE,
                host VARCHAR NOT NULL,
                port INTEGER NOT NULL DEFAULT 22,
                user VARCHAR,
                key_path VARCHAR,
                use_agent BOOLEAN NOT NULL DEFAULT 0,
                capacity INTEGER NOT NULL DEFAULT 4,
                enabled BOOLEAN NOT NULL DEFAULT 1,
                builtin BOOLEAN NOT NULL DEFAULT 0,
                work_dir VARCHAR NOT NULL DEFAULT '.workdeck/work',
                created_at DATETIME NOT NULL,
                status VARCHAR NOT NULL DEFAULT 'unknown',
                reason VARCHAR NOT NULL DEFAULT '',
                checked_at DATETIME,
                latency_ms FLOAT,
                connect_ms FLOAT,
                facts VARCHAR NOT NULL DEFAULT '{}',
                presented_key VARCHAR,
                trust_next_key BOOLEAN NOT NULL DEFAULT 0
            )""",
            "CREATE INDEX ix_worker_name ON worker (name)",
            """CREATE TABLE pool (
                id INTEGER PRIMARY KEY,
                name VARCHAR NOT NULL UNIQUE,
                description VARCHAR NOT NULL DEFAULT '',
                is_default BOOLEAN NOT NULL DEFAULT 0,
                created_at DATETIME NOT NULL
            )""",
            "CREATE INDEX ix_pool_name ON pool (name)",
            """CREATE TABLE pool_member (
                pool_id INTEGER NOT NULL REFERENCES pool (id) ON DELETE CASCADE,
                worker_id INTEGER NOT NULL REFERENCES worker (id) ON DELETE CASCADE,
                PRIMARY KEY (pool_id, worker_id)
            )""",
            """CREATE TABLE host_key (
                worker_id INTEGER PRIMARY KEY REFERENCES worker (id) ON DELETE CASCADE,
                public_key VARCHAR NOT NULL,
                fingerprint VARCHAR NOT NULL,
                trusted_at DATETIME NOT NULL,
                trusted_by VARCHAR NOT NULL DEFAULT ''
            )""",
            """CREATE TABLE health_check (
                id INTEGER PRIMARY KEY,
                worker_id INTEGER NOT NULL REFERENCES worker (id) ON DELETE CASCADE,
                checked_at DATETIME NOT NULL,
                status VARCHAR NOT NULL,
                reason VARCHAR NOT NULL DEFAULT '',
                latency_ms FLOAT,
                connect_ms FLOAT,
                load1 FLOAT,
                disk_free_mb FLOAT
            )""",
            "CREATE INDEX ix_health_check_worker_id ON health_check (worker_id)",
            "CREATE INDEX ix_health_check_checked_at ON health_check (checked_at)",
            """CREATE TABLE audit_event (
                id INTEGER PRIMARY KEY,
                at DATETIME NOT NULL,
                actor VARCHAR NOT NULL,
                action VARCHAR NOT NULL,
                target VARCHAR NOT NULL,
                detail VARCHAR NOT NULL DEFAULT ''
            )""",
            "CREATE INDEX ix_audit_event_at ON audit_event (at)",
            """CREATE TABLE setting (
                key VARCHAR PRIMARY KEY,
                value VARCHAR NOT NULL
            )""",
        ],
    ),
    (
        "environments, runbooks, runs, steps, logs, leases, decisions",
        [
            """CREATE TABLE environment (
                id INTEGER PRIMARY KEY,
                name VARCHAR NOT NULL UNIQUE,
                created_at DATETIME NOT NULL
            )""",
            "CREATE INDEX ix_environment_name ON environment (name)",
            """CREATE TABLE runbook (
                id INTEGER PRIMARY KEY,
                name VARCHAR NOT NULL UNIQUE,
                description VARCHAR NOT NULL DEFAULT '',
                definition VARCHAR NOT NULL,
                updated_at DATETIME NOT NULL
            )""",
            "CREATE INDEX ix_runbook_name ON runbook (name)",
            """CREATE TABLE run (
                id INTEGER PRIMARY KEY,
                runbook VARCHAR NOT NULL,
                environment VARCHAR NOT NULL,
                status VARCHAR NOT NULL DEFAULT 'queued',
                reason VARCHAR NOT NULL DEFAULT '',
                definition VARCHAR NOT NULL,
                variables VARCHAR NOT NULL DEFAULT '{}',
                secrets VARCHAR NOT NULL DEFAULT '',
                guided BOOLEAN NOT NULL DEFAULT 0,
                step_through BOOLEAN NOT NULL DEFAULT 0,
                actor VARCHAR NOT NULL DEFAULT '',
                created_at DATETIME NOT NULL,
                started_at DATETIME,
                finished_at DATETIME,
                output_bytes INTEGER NOT NULL DEFAULT 0
            )""",
            "CREATE INDEX ix_run_runbook ON run (runbook)",
            "CREATE INDEX ix_run_created_at ON run (created_at)",
            """CREATE TABLE run_step (
                id INTEGER PRIMARY KEY,
                run_id INTEGER NOT NULL REFERENCES run (id) ON DELETE CASCADE,
                position INTEGER NOT NULL,
                name VARCHAR NOT NULL,
                worker VARCHAR NOT NULL DEFAULT '',
                status VARCHAR NOT NULL DEFAULT 'queued',
                reason VARCHAR NOT NULL DEFAULT '',
                attempt INTEGER NOT NULL DEFAULT 1,
                exit_status INTEGER,
                started_at DATETIME,
                finished_at DATETIME
            )""",
            "CREATE INDEX ix_run_step_run_id ON run_step (run_id)",
            """CREATE TABLE log_chunk (
                id INTEGER PRIMARY KEY,
                run_id INTEGER NOT NULL REFERENCES run (id) ON DELETE CASCADE,
                first_seq INTEGER NOT NULL,
                last_seq INTEGER NOT NULL,
                position INTEGER NOT NULL,
                worker VARCHAR NOT NULL,
                stream VARCHAR NOT NULL,
                lines VARCHAR NOT NULL
            )""",
            # Followers ask for "lines of run R after N": this index answers it directly.
            "CREATE INDEX ix_log_chunk_run_id ON log_chunk (run_id, last_seq)",
            """CREATE TABLE lease (
                id INTEGER PRIMARY KEY,
                worker_id INTEGER NOT NULL REFERENCES worker (id) ON DELETE CASCADE,
                run_id INTEGER NOT NULL REFERENCES run (id) ON DELETE CASCADE,
                position INTEGER NOT NULL,
                since DATETIME NOT NULL,
                reason VARCHAR NOT NULL DEFAULT ''
            )""",
            "CREATE INDEX ix_lease_worker_id ON lease (worker_id)",
            "CREATE INDEX ix_lease_run_id ON lease (run_id)",
            """CREATE TABLE decision (
                id INTEGER PRIMARY KEY,
                run_id INTEGER NOT NULL REFERENCES run (id) ON DELETE CASCADE,
                position INTEGER,
                action VARCHAR NOT NULL,
                actor VARCHAR NOT NULL,
                note VARCHAR NOT NULL DEFAULT '',
                at DATETIME NOT NULL
            )""",
            "CREATE INDEX ix_decision_run_id ON decision (run_id)",
        ],
    ),
    (
        "draining workers, the pool a lease came through, pool utilization samples",
        [
            "ALTER TABLE worker ADD COLUMN draining BOOLEAN NOT NULL DEFAULT 0",
            "ALTER TABLE lease ADD COLUMN pool VARCHAR NOT NULL DEFAULT ''",
            "ALTER TABLE lease ADD COLUMN step VARCHAR NOT NULL DEFAULT ''",
            """CREATE TABLE pool_sample (
                id INTEGER PRIMARY KEY,
                pool_id INTEGER NOT NULL REFERENCES pool (id) ON DELETE CASCADE,
                at DATETIME NOT NULL,
                leased INTEGER NOT NULL,
                capacity INTEGER NOT NULL,
                queued INTEGER NOT NULL
            )""",
            # History is read per pool over a time range, and pruned by time.
            "CREATE INDEX ix_pool_sample_pool_id ON pool_sample (pool_id, at)",
            "CREATE INDEX ix_pool_sample_at ON pool_sample (at)",
        ],
    ),
    (
        "the processes of a step kept with its lease, orphaned steps, run retention",
        [
            "ALTER TABLE lease ADD COLUMN marker VARCHAR NOT NULL DEFAULT ''",
            "ALTER TABLE lease ADD COLUMN pgid INTEGER",
            "ALTER TABLE lease ADD COLUMN boot_id VARCHAR NOT NULL DEFAULT ''",
            "ALTER TABLE lease ADD COLUMN proc_start VARCHAR NOT NULL DEFAULT ''",
            "ALTER TABLE lease ADD COLUMN orphan VARCHAR NOT NULL DEFAULT ''",
            # Retention walks finished runs oldest first.
            "CREATE INDEX ix_run_finished_at ON run (finished_at)",
        ],
    ),
    (
        "what a waiting run waits for, kept across a restart",
        ["ALTER TABLE run ADD COLUMN waiting VARCHAR NOT NULL DEFAULT ''"],
    ),
    (
        "one name per idea: a worker's last check, the host key it presented, trusting "
        "its first key, the default pool",
        [
            "ALTER TABLE worker RENAME COLUMN status TO check_status",
            "ALTER TABLE worker RENAME COLUMN presented_key TO presented_host_key",
            "ALTER TABLE worker RENAME COLUMN trust_next_key TO trust_host_key",
            'ALTER TABLE pool RENAME COLUMN is_default TO "default"',
        ],
    ),
    (
        "one name per idea: a lease's step name; why a step's worker was chosen, apart from "
        "why the step ended as it did",
        [
            "ALTER TABLE lease RENAME COLUMN step TO step_name",
            "ALTER TABLE lease RENAME COLUMN reason TO worker_reason",
            "ALTER TABLE run_step ADD COLUMN worker_reason VARCHAR NOT NULL DEFAULT ''",
            # Until now a step that ran, or went well, kept why its worker was chosen as
            # its reason.
            "UPDATE run_step SET worker_reason = reason, reason = '' "
            "WHERE status IN ('succeeded', 'running') AND worker != ''",
        ],
    ),
    (
        "one name per idea: a pool's usage over time",
        [
            "ALTER TABLE pool_sample RENAME TO usage_sample",
            "DROP INDEX ix_pool_sample_pool_id",
            "DROP INDEX ix_pool_sample_at",
            "CREATE INDEX ix_usage_sample_pool_id ON usage_sample (pool_id, at)",
            "CREATE INDEX ix_usage_sample_at ON usage_sample (at)",
        ],
    ),
    (
        "the container a step runs in, kept with its lease",
        ["ALTER TABLE lease ADD COLUMN container VARCHAR NOT NULL DEFAULT ''"],
    ),
    (
        "the container engine a worker's steps must use, or a pool's",
        ["ALTER TABLE worker ADD COLUMN engine VARCHAR NOT NULL DEFAULT ''",
         "ALTER TABLE pool ADD COLUMN engine VARCHAR NOT NULL DEFAULT ''"],
    ),
    (
        "dynamic workers: a pool's provisioner, and the workers it made",
        ["ALTER TABLE worker ADD COLUMN dynamic BOOLEAN NOT NULL DEFAULT 0",
         """CREATE TABLE provisioner (
                pool_id INTEGER PRIMARY KEY REFERENCES pool (id) ON DELETE CASCADE,
                create_command VARCHAR NOT NULL,
                destroy_command VARCHAR NOT NULL,
                min_workers INTEGER NOT NULL DEFAULT 0,
                max_workers INTEGER NOT NULL DEFAULT 1,
                capacity INTEGER NOT NULL DEFAULT 1,
                idle_s FLOAT NOT NULL DEFAULT 300,
                wait_s FLOAT NOT NULL DEFAULT 10,
                timeout_s FLOAT NOT NULL DEFAULT 120,
                per_minute INTEGER NOT NULL DEFAULT 6,
                state VARCHAR NOT NULL DEFAULT 'ready',
                note VARCHAR NOT NULL DEFAULT '',
                note_at DATETIME
            )"""],
    ),
    (
        "people, their roles and their tokens",
        ["""CREATE TABLE person (
                id INTEGER PRIMARY KEY,
                name VARCHAR NOT NULL UNIQUE,
                created_at DATETIME NOT NULL
            )""",
         "CREATE INDEX ix_person_name ON person (name)",
         """CREATE TABLE role_grant (
                id INTEGER PRIMARY KEY,
                person_id INTEGER NOT NULL REFERENCES person (id) ON DELETE CASCADE,
                role VARCHAR NOT NULL,
                environment VARCHAR NOT NULL DEFAULT ''
            )""",
         "CREATE INDEX ix_role_grant_person_id ON role_grant (person_id)",
         """CREATE TABLE api_token (
                id INTEGER PRIMARY KEY,
                person_id INTEGER NOT NULL REFERENCES person (id) ON DELETE CASCADE,
                digest VARCHAR NOT NULL UNIQUE,
                label VARCHAR NOT NULL DEFAULT '',
                created_at DATETIME NOT NULL,
                expires_at DATETIME,
                last_used_at DATETIME
            )""",
         "CREATE INDEX ix_api_token_person_id ON api_token (person_id)",
         "CREATE INDEX ix_api_token_digest ON api_token (digest)"],
    ),
    (
        "the OS account a person is on the server's host",
        ["ALTER TABLE person ADD COLUMN os_user VARCHAR",
         "CREATE UNIQUE INDEX ix_person_os_user ON person (os_user)"],
    ),
    (
        "four eyes: environments that need another person's approval, and who launched",
        ["ALTER TABLE environment ADD COLUMN four_eyes BOOLEAN NOT NULL DEFAULT 0",
         "ALTER TABLE run ADD COLUMN person VARCHAR NOT NULL DEFAULT ''"],
    ),
]

LATEST = len(MIGRATIONS)

# What a store at LATEST still differs in from the baseline revision: its names were
# indexed twice (a unique constraint and a plain index), the baseline's index is unique.
# Done as the store is recorded at the baseline, so that later revisions find one schema.
TO_BASELINE = [
    statement
    for table in ("worker", "pool", "environment", "runbook", "person")
    for statement in (f"DROP INDEX ix_{table}_name",
                      f"CREATE UNIQUE INDEX ix_{table}_name ON {table} (name)")
] + ["DROP INDEX ix_api_token_digest",
     "CREATE UNIQUE INDEX ix_api_token_digest ON api_token (digest)"]


def schema_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(conn: sqlite3.Connection, target: int = LATEST) -> list[int]:
    """Apply the missing steps up to `target`; return the versions applied.

    `conn` must be in autocommit mode (isolation_level=None) so that each step's
    BEGIN IMMEDIATE ... COMMIT is the only transaction around it.
    """
    applied: list[int] = []
    current = schema_version(conn)
    for version in range(current + 1, target + 1):
        _, statements = MIGRATIONS[version - 1]
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read inside the lock: another process may have migrated meanwhile.
            if schema_version(conn) >= version:
                conn.execute("ROLLBACK")
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(version)
    return applied

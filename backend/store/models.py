"""The stored domain: workers, pools, pinned host keys, health checks, audit events, settings."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

# The statuses are part of the wire contract; they are defined there once.
from wire.statuses import (  # noqa: F401 - re-exported for the backend
    CANCELLED,
    DISABLED,
    FAILED,
    FINISHED,
    HEALTHY,
    INTERRUPTED,
    LOST,
    QUEUED,
    RUNNING,
    SKIPPED,
    STATUSES,
    SUCCEEDED,
    UNAVAILABLE,
    UNHEALTHY,
    UNKNOWN,
    WAITING,
    WARNING,
)

DEFAULT_POOL = "Default Worker Pool"
BUILTIN_WORKER = "built-in-worker"


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """A datetime read from the store, in UTC: SQLite hands them back naive."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class Worker(SQLModel, table=True):
    __tablename__ = "worker"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    host: str
    port: int = 22
    user: str | None = None
    key_path: str | None = None
    use_agent: bool = False
    capacity: int = 4
    enabled: bool = True
    draining: bool = False  # finishes its leases, takes no new ones
    builtin: bool = False
    work_dir: str = ".workdeck/work"
    created_at: datetime = Field(default_factory=utcnow)
    # The latest health check, kept on the row so that listing the fleet is one query.
    check_status: str = UNKNOWN  # what the last check found (shown as `status` unless disabled)
    reason: str = ""
    checked_at: datetime | None = None
    latency_ms: float | None = None
    connect_ms: float | None = None
    facts: str = "{}"
    # The host key the worker presented last when it was not trusted, so that an
    # operator can trust exactly what was shown to them.
    presented_host_key: str | None = None
    # Set by --trust-host-key: pin the key the next connection presents, once, when
    # no key is pinned yet (it never overrides a pinned key that changed).
    trust_host_key: bool = False
    # The container engine its steps in an image must use ("": the first that answers).
    engine: str = ""
    # Made by its pool's provisioner for the work, and destroyed by it when idle.
    dynamic: bool = False


class Pool(SQLModel, table=True):
    __tablename__ = "pool"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    description: str = ""
    default: bool = False  # steps that name no pool run here
    # The container engine its steps in an image use where a member names none.
    engine: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class Provisioner(SQLModel, table=True):
    """How a pool makes workers on demand (dynamic workers) and gives them back: two
    commands run on the server's host, and the limits they are held to."""

    __tablename__ = "provisioner"

    pool_id: int = Field(foreign_key="pool.id", primary_key=True, ondelete="CASCADE",
                         sa_column_kwargs={"autoincrement": False})
    create_command: str  # the new worker's name is its last argument; prints one JSON object
    destroy_command: str  # the worker's name is its last argument
    min_workers: int = 0  # kept warm, idle or not
    max_workers: int = 1
    capacity: int = 1  # slots on each worker it makes
    idle_s: float = 300.0  # a dynamic worker idle this long is destroyed (above min_workers)
    wait_s: float = 10.0  # a step that waited this long for a slot asks for a new worker
    timeout_s: float = 120.0  # either command is stopped after this long
    per_minute: int = 6  # at most this many workers made in any minute
    # What it is doing, and the last thing that happened to it (a failure says why).
    state: str = "ready"
    note: str = ""
    note_at: datetime | None = None


class PoolMember(SQLModel, table=True):
    __tablename__ = "pool_member"

    pool_id: int = Field(foreign_key="pool.id", primary_key=True, ondelete="CASCADE")
    worker_id: int = Field(foreign_key="worker.id", primary_key=True, ondelete="CASCADE")


class HostKey(SQLModel, table=True):
    """The host key pinned for a worker: the only key its connections accept."""

    __tablename__ = "host_key"

    worker_id: int = Field(foreign_key="worker.id", primary_key=True, ondelete="CASCADE",
                           sa_column_kwargs={"autoincrement": False})
    public_key: str
    fingerprint: str
    trusted_at: datetime = Field(default_factory=utcnow)
    trusted_by: str = ""


class HealthCheck(SQLModel, table=True):
    """One health check result; the last few per worker are kept as history."""

    __tablename__ = "health_check"

    id: int | None = Field(default=None, primary_key=True)
    worker_id: int = Field(foreign_key="worker.id", index=True, ondelete="CASCADE")
    checked_at: datetime = Field(default_factory=utcnow, index=True)
    status: str
    reason: str = ""
    latency_ms: float | None = None
    connect_ms: float | None = None
    load1: float | None = None
    disk_free_mb: float | None = None


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str
    action: str
    target: str
    detail: str = ""


class Setting(SQLModel, table=True):
    """Server-wide settings (the machine policy, the built-in worker switch) as JSON values."""

    __tablename__ = "setting"

    key: str = Field(primary_key=True)
    value: str


class Environment(SQLModel, table=True):
    __tablename__ = "environment"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    # Every launch and manual step here needs another person's approval.
    four_eyes: bool = False


class Runbook(SQLModel, table=True):
    """A runbook as its normalized definition (JSON), which round-trips to TOML losslessly."""

    __tablename__ = "runbook"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    description: str = ""
    definition: str  # JSON of backend.runbooks.Runbook
    updated_at: datetime = Field(default_factory=utcnow)


class Run(SQLModel, table=True):
    __tablename__ = "run"
    # Runs counted by runbook, environment and status (GET /metrics) from the index alone:
    # a run's row carries its whole runbook, and a table scan reads every one.
    __table_args__ = (Index("ix_run_runbook_environment_status", "runbook", "environment",
                            "status"),)

    id: int | None = Field(default=None, primary_key=True)
    runbook: str = Field(index=True)
    environment: str
    status: str = QUEUED
    reason: str = ""
    definition: str  # the runbook as it was at launch
    variables: str = "{}"  # non-sensitive values, JSON
    secrets: str = ""  # sensitive values, encrypted (backend.vault)
    guided: bool = False
    step_through: bool = False
    actor: str = ""
    person: str = ""  # who launched it (the actor's person), whom four eyes exclude
    created_at: datetime = Field(default_factory=utcnow, index=True)
    started_at: datetime | None = None
    finished_at: datetime | None = Field(default=None, index=True)  # retention, oldest first
    output_bytes: int = 0
    # JSON, while the run waits for a decision: what it waits for and where its course
    # stands, so that a server started again asks the same question.
    waiting: str = ""
    # The node that executes it ("" until one claims it: backend/runs/claims.py).
    node: str = Field(default="", index=True)
    # Every line of its log is stored: a follower on another node ends there.
    log_closed: bool = False
    # Why it was launched, when not by hand: "schedule nightly (At 03:00 …)", "rerun of
    # run 12 from step 3" (empty: launched by its actor).
    cause: str = ""
    schedule: str = Field(default="", index=True)  # the schedule that launched it
    rerun_of: int | None = Field(default=None, index=True)  # the run it runs again
    from_step: int = 1  # a rerun's first step: those before it are not run again


class RunStep(SQLModel, table=True):
    """One step of a run on one worker (a `run_on = "all"` step has one row per worker)."""

    __tablename__ = "run_step"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True, ondelete="CASCADE")
    position: int
    name: str
    worker: str = ""
    status: str = QUEUED
    reason: str = ""  # why it has its status (failed, skipped, waiting), when it says more
    worker_reason: str = ""  # why its worker was chosen
    attempt: int = 1
    exit_status: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class LogChunk(SQLModel, table=True):
    """Consecutive log lines of one step, worker and stream, stored as one row.

    `lines` holds one line per `\\n`; the first line of each read from the worker is
    `<unix time>\\t<text>`, the lines after it (no tab) came then too. Line numbers within
    the run are first_seq .. last_seq, so a follower resumes exactly where it stopped.
    """

    __tablename__ = "log_chunk"
    # Followers ask for "lines of run R after N": this index answers it directly.
    __table_args__ = (Index("ix_log_chunk_run_id", "run_id", "last_seq"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", ondelete="CASCADE")
    first_seq: int
    last_seq: int
    position: int
    worker: str
    stream: str
    lines: str


class Lease(SQLModel, table=True):
    """A slot of a worker's capacity taken by a step that is running on it."""

    __tablename__ = "lease"

    id: int | None = Field(default=None, primary_key=True)
    worker_id: int = Field(foreign_key="worker.id", index=True, ondelete="CASCADE")
    run_id: int = Field(foreign_key="run.id", index=True, ondelete="CASCADE")
    position: int
    step_name: str = ""  # for whoever looks at the pool
    pool: str = ""  # the pool it was taken through
    since: datetime = Field(default_factory=utcnow)
    worker_reason: str = ""  # why this worker was chosen
    # The step's processes on the worker (backend.remote.StepProcess), stored as soon as
    # they are known, so that a server started after a crash can still kill them.
    marker: str = ""
    pgid: int | None = None
    boot_id: str = ""
    proc_start: str = ""
    container: str = ""  # the step's container, when it runs in one (transport.remote)
    # Set when the step ended but its processes could not be confirmed gone: the slot
    # stays taken, with this reason, until they are (backend.orphans).
    orphan: str = ""


class StepWait(SQLModel, table=True):
    """A step waiting for a slot, whichever node executes its run: every node serves the
    queue in this order (backend/runs/leases.py), so it stays first come, first served."""

    __tablename__ = "step_wait"

    id: int | None = Field(default=None, primary_key=True)
    node: str = Field(index=True)
    run_id: int = Field(foreign_key="run.id", index=True, ondelete="CASCADE")
    position: int
    step_name: str = ""
    pool: str
    worker: str = ""  # the one worker it waits for (a `run_on = "all"` step's share)
    avoid: str = "[]"  # JSON: workers taken last (where a retry just failed)
    since: datetime = Field(default_factory=utcnow)


class UsageSample(SQLModel, table=True):
    """A pool's usage at a moment (its slots): written when they change, thinned as they
    age."""

    __tablename__ = "usage_sample"
    # History is read per pool over a time range, and pruned by time.
    __table_args__ = (Index("ix_usage_sample_pool_id", "pool_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    pool_id: int = Field(foreign_key="pool.id", ondelete="CASCADE")
    at: datetime = Field(default_factory=utcnow, index=True)
    leased: int
    capacity: int
    queued: int


class Decision(SQLModel, table=True):
    """What an operator decided for a waiting run: who, when, what, and their note."""

    __tablename__ = "decision"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True, ondelete="CASCADE")
    position: int | None = None
    action: str
    actor: str
    note: str = ""
    at: datetime = Field(default_factory=utcnow)


class RunRequest(SQLModel, table=True):
    """A cancel or a decision for a run that another node executes, until that node has
    acted on it (backend/runs/requests.py)."""

    __tablename__ = "run_request"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True, ondelete="CASCADE")
    action: str  # "cancel", or a decision's action
    actor: str
    person: str = ""
    note: str = ""
    at: datetime = Field(default_factory=utcnow)
    done: bool = False  # acted on: the asking node answers, then removes it
    error: str = ""  # why it could not be done, when it could not


class Person(SQLModel, table=True):
    """Someone who may use Workdeck (the server's own account needs no row: always admin)."""

    __tablename__ = "person"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    # Their account on the server's host: over the Unix socket the kernel says who
    # connects (SO_PEERCRED), and this says which person that is.
    os_user: str | None = Field(default=None, unique=True)


class RoleGrant(SQLModel, table=True):
    """One role given to one person, everywhere ("") or in one environment."""

    __tablename__ = "role_grant"

    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="person.id", index=True, ondelete="CASCADE")
    role: str
    environment: str = ""


class ApiToken(SQLModel, table=True):
    """A person's token, kept only as its SHA-256 (hex)."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="person.id", index=True, ondelete="CASCADE")
    digest: str = Field(unique=True, index=True)
    label: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    last_used_at: datetime | None = None


class Node(SQLModel, table=True):
    """A server using the store: where it listens, and its heartbeat (the database's
    time, not its own clock's)."""

    __tablename__ = "node"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    address: str = ""  # where it listens (its socket, and an address if any)
    host: str = ""
    pid: int = 0
    version: str = ""
    started_at: datetime = Field(default_factory=utcnow)
    heartbeat_at: datetime = Field(default_factory=utcnow)
    # Lost once its heartbeat is older than this (the lease it took at that heartbeat: a
    # change of the setting holds for each node from its next heartbeat on).
    lease_s: float = 15.0
    stopped_at: datetime | None = None  # a stop it said; a node that died never says it
    draining: bool = False  # finishes what it runs, takes no new runs
    # What it does, as of its last heartbeat.
    workers_checked: int = 0
    runs_executing: int = 0
    # Set by the node that found it lost and took its runs over: until it has stopped
    # its stale work, every write it tries is refused (backend/nodes.py, "fencing").
    lost_at: datetime | None = None
    taken_over_by: str = ""


class Schedule(SQLModel, table=True):
    """A runbook launched at the times of a cron expression, in a time zone, as the person
    who made it (backend/runs/schedules.py)."""

    __tablename__ = "schedule"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    runbook: str = Field(index=True)
    environment: str
    cron: str
    timezone: str = "UTC"
    variables: str = "{}"  # non-sensitive values, JSON
    secrets: str = ""  # sensitive values, encrypted (backend.vault)
    person: str = ""  # who made it: its launches are theirs, with the grants they hold then
    actor: str = ""
    overlap: bool = False  # may launch while its last run still runs
    missed: str = "skip"  # after the server was down over its times: "skip" or "once"
    paused: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    next_at: datetime | None = None  # its next time (None while paused)
    last_at: datetime | None = None  # the time it last came due
    last_run_id: int | None = None
    last_outcome: str = ""  # what came of its last time: launched, skipped, refused


class Notification(SQLModel, table=True):
    """Where to tell of what happens: a URL posted to on chosen events (backend/notify/)."""

    __tablename__ = "notification"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)
    url: str  # sealed (backend.vault): a Slack webhook's URL is itself a secret
    format: str = "json"  # or "slack"
    events: str = "[]"  # JSON: the events it is told of
    environments: str = "[]"  # JSON: only runs there (none: every environment)
    pools: str = "[]"  # JSON: only workers and pools there (none: every pool)
    secret: str = ""  # sealed: signs each body (HMAC-SHA256), when set
    actor: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class Delivery(SQLModel, table=True):
    """One event for one notification: tried until delivered, or failed for good after
    an hour of retries."""

    __tablename__ = "delivery"

    id: int | None = Field(default=None, primary_key=True)
    notification_id: int = Field(foreign_key="notification.id", index=True,
                                 ondelete="CASCADE")
    event: str
    subject: str = ""  # what it is about, in a few words: "run 12", "worker w-01"
    body: str  # exactly the bytes posted (JSON), so that a retry signs the same
    status: str = Field(default="pending", index=True)  # pending, delivered, failed
    attempts: int = 0
    next_at: datetime = Field(default_factory=utcnow, index=True)
    answer: str = ""  # the receiver's last answer: "200 OK", "500 ...", "timed out"
    created_at: datetime = Field(default_factory=utcnow)
    delivered_at: datetime | None = None

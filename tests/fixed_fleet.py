"""A console whose fleet is a fixed snapshot, so that screenshots compare byte for byte.

Only the push stream is replaced (live latencies and clocks would change every
pixel); everything the views do with the data is the real console.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from console.app import WorkdeckApp
from console.client import Target
from wire.datadir import DataDir

TWO_DAYS_AGO = (datetime.now(UTC) - timedelta(days=2, hours=1)).isoformat()
FACTS = {"os": "Debian GNU/Linux 12 (bookworm)", "kernel": "Linux 6.1.0-18-amd64",
         "arch": "x86_64", "hostname": "worker", "cpus": 4, "uptime_s": 864000.0,
         "load": [0.42, 0.37, 0.30], "mem_total_mb": 15890.0, "mem_available_mb": 11210.5,
         "disks": [{"mount": "/", "free_mb": 48213.0, "size_mb": 101000.0}],
         "work_dir": "/home/deploy/.workdeck/work", "container_engine": "podman 4.3.1"}


def pool(name: str, description: str, leased: int, capacity: int, queued: int,
         healthy: int, workers: int, default: bool = False) -> dict[str, Any]:
    return {"name": name, "description": description, "default": default, "engine": "",
            "members": [], "provisioner": None,
            "leased": leased, "capacity": capacity, "queued": queued,
            "utilization": round(leased / capacity, 3) if capacity else 0.0,
            "healthy_workers": healthy, "workers": workers, "draining_workers": 0}


def worker(name: str, pools: list[str], status: str = "healthy", reason: str = "",
           **extra: Any) -> dict[str, Any]:
    shown = {
        "name": name, "host": f"10.20.0.{len(name) % 250}", "port": 22, "user": "deploy",
        "key_path": "/home/ops/.ssh/id_ed25519", "use_agent": False, "pools": pools,
        "enabled": status != "disabled", "builtin": False, "capacity": 4,
        "work_dir": ".workdeck/work", "status": status, "check_status": status, "reason": reason,
        "checked_at": TWO_DAYS_AGO if status != "unknown" else None,
        "latency_ms": 12.4 if status in ("healthy", "warning") else None, "connect_ms": 38.0,
        "facts": FACTS if status in ("healthy", "warning", "unhealthy") else {},
        "host_key": "SHA256:q1w2e3r4t5y6u7i8o9p0AaSsDdFfGgHhJjKkLlZzXx", "presented_host_key":
        None, "draining": False, "leased": 0, "orphans": 0, "orphan_reason": "", "engine": "",
        "dynamic": False, **extra,
    }
    # The names of one release ago, as the server sends them too.
    return {**shown, "leases": shown["leased"], "health": shown["check_status"]}


WEB = "Azure Central US Production Worker Pool"
DB = "Omaha Production Database Worker Pool"
DEV = "Omaha Development Worker Pool"
BUILD = "Azure Central US Build Worker Pool"
WORKERS = [
        {**worker("built-in-worker", ["Default Worker Pool"]), "builtin": True,
         "host": "localhost", "port": 0, "leased": 1, "leases": 1},
        worker("p-web-azure-worker-01", [WEB], leased=3),
        worker("p-web-azure-worker-02", [WEB], "warning", "only 812 MB free on /"),
        worker("p-db-omaha-worker-01", [DB], leased=4),
        worker("p-db-omaha-worker-02", [DB], "unavailable",
               "HOST KEY CHANGED: presented SHA256:Zx9... but SHA256:q1w2... is pinned; this "
               "may be a man-in-the-middle attack, connection refused",
               presented_host_key="SHA256:Zx9yW8vU7tS6rQ5pO4nM3lK2jI1hG0fEdCbA"),
        worker("d-app-omaha-worker-01", [DEV], "unhealthy",
               "custom health check failed: docker daemon not running"),
        worker("d-app-omaha-worker-02", [DEV], "disabled"),
        worker("d-app-omaha-worker-03", [DEV], "unknown"),
        worker("azure-central-3fa2c", [BUILD], leased=2, dynamic=True),
]
POOLS = [
    pool("Default Worker Pool", "Where steps run when they name no pool", 1, 4, 0, 1, 1,
         default=True),
    pool(WEB, "Web deployments to Azure Central US", 3, 4, 0, 1, 2),
    pool(DB, "Schema migrations in the Omaha data center", 4, 4, 2, 1, 2),
    pool(DEV, "Development builds and tests", 0, 0, 0, 0, 3),
    {**pool(BUILD, "Builds, on workers made for the work", 2, 4, 0, 1, 1),
     "provisioner": {"create": "/opt/ops/azure-vm create", "destroy": "/opt/ops/azure-vm destroy",
                     "min": 0, "max": 4, "capacity": 4, "idle_s": 300.0, "wait_s": 10.0,
                     "timeout_s": 120.0, "per_minute": 6, "state": "creating",
                     "note": "made azure-central-3fa2c at 10.20.0.29:22 in 41.3 s",
                     "note_at": TWO_DAYS_AGO, "workers": 1}},
]
for _pool in POOLS:
    _pool["members"] = sorted(w["name"] for w in WORKERS if _pool["name"] in w["pools"])
SERVER = {"version": "0.1.0", "pid": 4242, "data_dir": "/srv/workdeck",
          "listen": "/srv/workdeck/server.sock", "started_at": 1_700_000_000.0,
          "uptime_s": 86_400.0, "connections": 6, "subscribers": 1, "store_fault": None,
          "data_dir_bytes": 48_000_000, "disk_free_bytes": 80_000_000_000, "host": "ops-1"}
# Who the console is for: an operator on two environments who approves everywhere.
YOU = {"name": "alice", "via": "socket", "os_user": "alice",
       "grants": [{"role": "approver", "environments": []},
                  {"role": "operator", "environments": ["Development", "Test"]}],
       "permissions": ["view", "launch", "decide", "cancel", "check", "drain", "approve"]}


def _waiting_run(run_id: int, runbook: str, environment: str, person: str, position: int,
                 prompt: str) -> dict[str, Any]:
    return {"id": run_id, "runbook": runbook, "environment": environment,
            "status": "waiting", "reason": prompt, "guided": False, "step_through": False,
            "actor": f"{person} (socket, account {person})", "person": person,
            # A fixed time and no start: the Dashboard shows when runs started and how long
            # they ran, which would move with the clock.
            "created_at": "2026-01-15T09:00:00+00:00", "started_at": None, "finished_at": None,
            "variables": {}, "sensitive": [], "step_count": 3,
            "waiting": {"position": position, "actions": ["abort", "approve"],
                        "prompt": prompt, "another_person": True}}


def _finished_run(run_id: int, runbook: str, environment: str, status: str, reason: str,
                  minute: int, seconds: int) -> dict[str, Any]:
    # Fixed times, days ago: shown as a date (in UTC here and in CI) and a duration.
    at = f"2026-01-15T08:{minute:02d}:00+00:00"
    end = f"2026-01-15T08:{minute + seconds // 60:02d}:{seconds % 60:02d}+00:00"
    return {"id": run_id, "runbook": runbook, "environment": environment, "status": status,
            "reason": reason, "guided": False, "step_through": False,
            "actor": "bob (token 4, from 10.1.2.3)", "person": "bob", "created_at": at,
            "started_at": at, "finished_at": end, "variables": {}, "sensitive": [],
            "step_count": 3, "waiting": None}


RUNS = [
    _finished_run(47, "Migrate database", "Test", "succeeded", "", 10, 74),
    _finished_run(48, "Migrate database", "Production", "failed",
                  "a step failed: exit status 1: ERROR: column \"customer_id\" is referenced",
                  20, 12),
    _finished_run(49, "Restart web tier", "Production", "cancelled", "cancelled by carol",
                  30, 200),
    _waiting_run(51, "Restart web tier", "Production", "bob", 0,
                 "needs approval by another person to start on Production (four eyes)"),
    _waiting_run(52, "Rotate certificates", "Production", "carol", 2,
                 "manual step 2: Check the new certificate is served, then approve. (needs "
                 "approval by another person)"),
    # alice's own: another person must approve it, so it is not hers to.
    _waiting_run(53, "Migrate database", "Production", "alice", 0,
                 "needs approval by another person to start on Production (four eyes)"),
]
PEOPLE = [
    {"name": "workdeck", "grants": [{"role": "admin", "environments": []}], "builtin": True,
     "os_user": "workdeck", "created_at": None, "tokens": 0},
    {"name": "alice", "grants": YOU["grants"], "builtin": False, "os_user": "alice",
     "created_at": TWO_DAYS_AGO, "tokens": 1},
    {"name": "bob", "grants": [{"role": "operator", "environments": []}], "builtin": False,
     "os_user": "bob", "created_at": TWO_DAYS_AGO, "tokens": 0},
    {"name": "carol", "grants": [{"role": "admin", "environments": []}], "builtin": False,
     "os_user": None, "created_at": TWO_DAYS_AGO, "tokens": 2},
]
TOKENS = [
    {"id": 3, "person": "alice", "label": "laptop", "created_at": TWO_DAYS_AGO,
     "expires_at": "2027-03-01T00:00:00+00:00", "last_used_at": TWO_DAYS_AGO},
]


def snapshot(usage_history: dict[str, list[list[float]]]) -> dict[str, Any]:
    """The push stream's first event, as the server sends it (wire.events.Snapshot)."""
    columns = list(WORKERS[0])
    return {"worker_columns": columns,
            "worker_rows": [[w[c] for c in columns] for w in WORKERS],
            "pools": POOLS, "usage_history": usage_history, "runs": RUNS,
            "advice": {"findings": 3, "critical": 1}, "runbooks": RUNBOOKS,
            "environments": ["Development", "Production", "Test"],
            "four_eyes": ["Production"], "server": SERVER, "you": YOU}

HISTORY = [
    {"checked_at": f"2026-01-15T09:{i:02d}:00+00:00",
     "status": "healthy" if i < 20 else "unhealthy",
     "reason": "" if i < 20 else "custom health check failed: docker daemon not running",
     "latency_ms": 10 + (i * 7) % 13, "connect_ms": None, "load1": 0.4, "disk_free_mb": 48213.0}
    for i in range(30)
]


DB_DETAIL = {
    "name": DB,
    "leases": [{"run_id": 40 + i, "runbook": "Migrate database", "position": 2,
                "step_name": "Apply migrations", "worker": "p-db-omaha-worker-01", "pool": DB,
                "since": TWO_DAYS_AGO,
                "worker_reason": f"p-db-omaha-worker-01: healthy, {i} of 4 slots in use, the "
                                 f"fewest of 1 with a free slot in {DB}"} for i in range(4)],
    "queue": [{"run_id": 44 + i, "position": 2, "step_name": "Apply migrations", "pool": DB,
               "worker": None, "since": TWO_DAYS_AGO} for i in range(2)],
}


LONG_RUN = {
    "id": 7, "runbook": "Collect diagnostics", "environment": "Production",
    "status": "failed", "reason": "a step failed", "guided": False, "step_through": False,
    "actor": "ops@bastion", "created_at": TWO_DAYS_AGO, "started_at": TWO_DAYS_AGO,
    "finished_at": TWO_DAYS_AGO, "variables": {}, "sensitive": [], "step_count": 1,
    "waiting": None, "decisions": [],
    "steps": [{"position": 1, "name": "Dump everything", "worker": "p-web-azure-worker-01",
               "status": "failed", "reason": "exit status 1: ERROR: disk full",
               "worker_reason": "p-web-azure-worker-01: healthy, 0 of 4 slots in use, the "
                                "fewest of 2 with a free slot in " + WEB,
               "attempt": 1, "exit_status": 1, "started_at": TWO_DAYS_AGO,
               "finished_at": TWO_DAYS_AGO, "manual": None}],
}
LONG_LINES = 120_000  # of the long run's log


def _long_chunk(first: int, last: int) -> dict[str, Any]:
    lines = [f"1700000000.000\tline {first}"] + [
        "ERROR: disk full" if seq == LONG_LINES else f"line {seq}"
        for seq in range(first + 1, last + 1)]
    return {"first_seq": first, "last_seq": last, "position": 1, "step": 1,
            "worker": "p-web-azure-worker-01", "stream": "stdout", "lines": "\n".join(lines)}


RUNBOOKS = [
    {"name": "Migrate database", "description": "Applies schema migrations, backed up first",
     "steps": 3, "variables": ["target_version"], "updated_at": TWO_DAYS_AGO},
    {"name": "Restart web tier", "description": "Drain, restart and re-enable the web servers",
     "steps": 4, "variables": ["service", "api_token"], "updated_at": TWO_DAYS_AGO},
    {"name": "Rotate certificates", "description": "New certificates on every web worker",
     "steps": 3, "variables": [], "updated_at": TWO_DAYS_AGO},
]
MIGRATE = {
    "name": "Migrate database", "description": RUNBOOKS[0]["description"],
    "variables": [{"name": "target_version", "default": "42", "sensitive": False,
                   "description": "the schema version to reach"}],
    "pools": {"DbPool": {"Test": DEV, "Production": DB}},
    "steps": [{"name": name, "script": "true", "manual": None, "pool": "DbPool",
               "timeout": 3600, "container": None, "retries": 0, "run_on": "any",
               "require_all": False, "condition": condition, "approval": "anyone"}
              for name, condition in (("Back up", "success"), ("Apply migrations", "success"),
                                      ("Restore on failure", "failure"))],
}
FINDINGS = [
    {"check": "pool-redundancy", "severity": "critical", "subject": "pool", "name": DEV,
     "finding": f"Pool '{DEV}' has 0 healthy workers (3 members).",
     "advice": "A pool needs at least two healthy workers so that one failing or being "
               "patched does not stop every step that runs there."},
    {"check": "pool-redundancy", "severity": "warning", "subject": "pool", "name": DB,
     "finding": f"Pool '{DB}' has 1 healthy worker (2 members).",
     "advice": "A pool needs at least two healthy workers."},
    {"check": "builtin-worker", "severity": "warning", "subject": "fleet",
     "name": "built-in-worker", "finding": "The built-in worker is on beside 8 real workers.",
     "advice": "Turn it off with `workdeck settings --builtin-worker off`."},
]
# The clock of the snapshots of views that say how soon or how long ago (schedules, node
# heartbeats): tests/test_snapshots.py freezes it there.
FIXED_NOW = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
SCHEDULES = [
    {"name": "nightly-migrate", "runbook": "Migrate database", "environment": "Test",
     "cron": "0 3 * * 1-5", "explained": "At 03:00 on Monday through Friday",
     "timezone": "Europe/Berlin", "variables": {"target_version": "latest"},
     "keeps_sensitive": False, "person": "alice", "actor": "alice (socket, account alice)",
     "overlap": False, "missed": "skip", "paused": False, "created_at": TWO_DAYS_AGO,
     "next_at": "2026-01-16T02:00:00+00:00", "last_at": "2026-01-15T02:00:00+00:00",
     "last_run_id": 47, "last_outcome": "run 47 succeeded", "runs": []},
    {"name": "weekly-cert-rotation", "runbook": "Rotate certificates",
     "environment": "Production", "cron": "0 4 * * 0", "explained": "At 04:00 on Sunday",
     "timezone": "UTC", "variables": {}, "keeps_sensitive": False, "person": "carol",
     "actor": "carol (token 9)", "overlap": False, "missed": "once", "paused": True,
     "created_at": TWO_DAYS_AGO, "next_at": None, "last_at": None, "last_run_id": None,
     "last_outcome": "", "runs": []},
]
NODES = [
    {"name": "ops-1", "state": "up", "this": True, "address": "https://ops-1:8443",
     "host": "ops-1", "pid": 4242, "version": "0.1.0", "started_at": TWO_DAYS_AGO,
     "last_seen": "2026-01-15T08:59:58+00:00", "seen_s_ago": 2.0, "draining": False,
     "workers_checked": 5, "runs_executing": 2},
    {"name": "ops-2", "state": "lost", "this": False, "address": "https://ops-2:8443",
     "host": "ops-2", "pid": 3131, "version": "0.1.0", "started_at": TWO_DAYS_AGO,
     "last_seen": "2026-01-15T08:12:00+00:00", "seen_s_ago": 2880.0, "draining": False,
     "workers_checked": 0, "runs_executing": 0},
]


class FixedApi:
    """Answers the reads the views make besides the stream: a worker's history, a pool,
    and one long finished run (7) whose log is made up as it is read."""

    async def get(self, path: str, params: dict[str, str] | None = None, **_kwargs: Any) -> Any:
        if path == "/api/advice":
            return FINDINGS
        if path == "/api/schedules":
            wanted = (params or {}).get("runbook")
            return [s for s in SCHEDULES if wanted in (None, s["runbook"])]
        if path == "/api/nodes":
            return NODES
        if path.startswith("/api/runbooks/"):
            return MIGRATE
        if path.endswith("/history"):
            return HISTORY
        if path.startswith("/api/pools/") and "Database" in path:
            return DB_DETAIL
        if path == "/api/runs/7":
            return LONG_RUN
        if path == "/api/people":
            return PEOPLE
        if path == "/api/tokens":
            return TOKENS
        return {}

    async def stream_events(self, path: str, params: dict[str, str] | None = None) -> Any:
        params = params or {}
        after = int(params.get("after", 0))
        if "tail" in params:
            after = max(after, LONG_LINES - int(params["tail"]))
        end = min(LONG_LINES, after + int(params.get("limit", LONG_LINES)))
        page = int(params.get("page", 50_000))
        while after < end:
            last = min(end, after + page)
            yield "chunks", [_long_chunk(after + 1, last)]
            after = last
        yield "end", {"status": "failed", "reason": "a step failed",
                      "following": "limit" not in params}

    async def aclose(self) -> None:
        return None


class FixedFleetApp(WorkdeckApp):
    def __init__(self) -> None:
        super().__init__(Target(DataDir.resolve("/srv/workdeck")))
        self.api = FixedApi()  # type: ignore[assignment]

    def follow_events(self) -> None:  # type: ignore[override]
        now = time.time()
        # Sampled at the middle of 30-second slices of the last ten minutes from now, so
        # the sparklines draw the same each time.
        history = {
            WEB: [[now - 585 + 30 * i, (i * 3) % 5, 4, 0] for i in range(20)],
            DB: [[now - 585 + 30 * i, min(4, i // 3), 4, max(0, i // 3 - 4)]
                 for i in range(20)],
        }
        self.fleet.load(snapshot(history))
        self.fleet_loaded = True
        self.connected = True
        self.connection_note = ""
        self.broadcast(None)

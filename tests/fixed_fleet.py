"""A console whose fleet is a fixed snapshot, so that screenshots compare byte for byte.

Only the push stream is replaced (live latencies and clocks would change every
pixel); everything the views do with the data is the real console.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from backend.config import DataDir
from console.app import WorkdeckApp
from console.client import Target

TWO_DAYS_AGO = (datetime.now(UTC) - timedelta(days=2, hours=1)).isoformat()
FACTS = {"os": "Debian GNU/Linux 12 (bookworm)", "kernel": "Linux 6.1.0-18-amd64",
         "arch": "x86_64", "hostname": "worker", "cpus": 4, "uptime_s": 864000.0,
         "load": [0.42, 0.37, 0.30], "mem_total_mb": 15890.0, "mem_available_mb": 11210.5,
         "disks": [{"mount": "/", "free_mb": 48213.0, "size_mb": 101000.0}],
         "work_dir": "/home/deploy/.workdeck/work"}


def worker(name: str, pools: list[str], status: str = "healthy", reason: str = "",
           **extra: Any) -> dict[str, Any]:
    return {
        "name": name, "host": f"10.20.0.{len(name) % 250}", "port": 22, "user": "deploy",
        "key_path": "/home/ops/.ssh/id_ed25519", "use_agent": False, "pools": pools,
        "enabled": status != "disabled", "builtin": False, "capacity": 4,
        "work_dir": ".workdeck/work", "status": status, "health": status, "reason": reason,
        "checked_at": TWO_DAYS_AGO if status != "unknown" else None,
        "latency_ms": 12.4 if status in ("healthy", "warning") else None, "connect_ms": 38.0,
        "facts": FACTS if status in ("healthy", "warning", "unhealthy") else {},
        "host_key": "SHA256:q1w2e3r4t5y6u7i8o9p0AaSsDdFfGgHhJjKkLlZzXx", "presented_host_key":
        None, **extra,
    }


WEB = "Azure Central US Production Worker Pool"
DB = "Omaha Production Database Worker Pool"
DEV = "Omaha Development Worker Pool"
SNAPSHOT = {
    "workers": [
        {**worker("built-in-worker", ["Default Worker Pool"]), "builtin": True,
         "host": "localhost", "port": 0},
        worker("p-web-azure-worker-01", [WEB]),
        worker("p-web-azure-worker-02", [WEB], "warning", "only 812 MB free on /"),
        worker("p-db-omaha-worker-01", [DB]),
        worker("p-db-omaha-worker-02", [DB], "unavailable",
               "HOST KEY CHANGED: presented SHA256:Zx9... but SHA256:q1w2... is pinned; this "
               "may be a man-in-the-middle attack, connection refused",
               presented_host_key="SHA256:Zx9yW8vU7tS6rQ5pO4nM3lK2jI1hG0fEdCbA"),
        worker("d-app-omaha-worker-01", [DEV], "unhealthy",
               "custom health check failed: docker daemon not running"),
        worker("d-app-omaha-worker-02", [DEV], "disabled"),
        worker("d-app-omaha-worker-03", [DEV], "unknown"),
    ],
    "pools": [
        {"name": "Default Worker Pool", "description": "Where steps run when they name no pool",
         "default": True},
        {"name": WEB, "description": "Web deployments to Azure Central US", "default": False},
        {"name": DB, "description": "Schema migrations in the Omaha data center",
         "default": False},
        {"name": DEV, "description": "Development builds and tests", "default": False},
    ],
    "server": {},
}


HISTORY = [
    {"checked_at": f"2026-01-15T09:{i:02d}:00+00:00",
     "status": "healthy" if i < 20 else "unhealthy",
     "reason": "" if i < 20 else "custom health check failed: docker daemon not running",
     "latency_ms": 10 + (i * 7) % 13, "connect_ms": None, "load1": 0.4, "disk_free_mb": 48213.0}
    for i in range(30)
]


class FixedApi:
    """Answers the one read the views make besides the stream: a worker's history."""

    async def get(self, path: str, **_kwargs: Any) -> Any:
        return HISTORY if path.endswith("/history") else {}

    async def aclose(self) -> None:
        return None


class FixedFleetApp(WorkdeckApp):
    def __init__(self) -> None:
        super().__init__(Target(DataDir.resolve("/srv/workdeck")))
        self.api = FixedApi()  # type: ignore[assignment]

    def follow_events(self) -> None:  # type: ignore[override]
        self.fleet.load(SNAPSHOT)
        self.fleet_loaded = True
        self.connected = True
        self.connection_note = ""
        self.broadcast(None)

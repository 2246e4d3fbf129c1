"""Where things live: the route modules depend on the backend's parts, never on the
server module that assembles them (no import circle between routes and server)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_route_modules_never_import_the_server_module():
    routes = sorted(p.stem for p in (ROOT / "backend" / "api").glob("*.py")
                    if p.stem != "__init__")
    assert {"workers", "pools", "runs", "events"} <= set(routes)
    probe = ("import importlib, sys\n"
             f"for name in {routes!r}:\n"
             "    importlib.import_module('backend.api.' + name)\n"
             "print('backend.server' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False", "a route module imports backend.server"


def test_routes_tell_the_backend_of_a_change_through_one_call():
    """A route that changes the store says so with backend.changed(kind, names), which
    publishes and wakes what depends on that kind (backend/core.py): a route that
    published or woke parts by hand would be the one that forgets the advisor."""
    by_hand = (".publish(", ".wake(", ".invalidate(", ".reread(", "advice_due",
               "reload_policy", ".drop(")
    offenders = []
    for path in sorted((ROOT / "backend" / "api").glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if any(call in line for call in by_hand):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert not offenders, "routes that publish or wake by hand:\n" + "\n".join(offenders)
    calls = sum(p.read_text().count("backend.changed(")
                for p in (ROOT / "backend" / "api").glob("*.py"))
    assert calls >= 12

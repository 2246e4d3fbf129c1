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


def test_every_route_declares_the_permission_it_needs(tmp_path):
    """Each route says next to itself what it needs (`dependencies=[need(...)]`, None for
    anyone known): a route added without one is refused here, not found open later."""
    from fastapi.routing import APIRoute

    from backend.api.app import create_app
    from backend.api.deps import Need
    from backend.core import Backend
    from backend.store.db import Store
    from wire.datadir import DataDir

    data_dir = DataDir(tmp_path / "data")
    data_dir.ensure()
    app = create_app(Backend(data_dir, listen="unix:x", store=Store(data_dir.database)))
    def every(routes):  # type: ignore[no-untyped-def]
        for route in routes:  # included routers are wrapped (FastAPI 0.165)
            yield from every(route.original_router.routes) \
                if hasattr(route, "original_router") else [route]

    routes = [r for r in every(app.routes) if isinstance(r, APIRoute)]
    assert len(routes) > 40
    undeclared = [f"{sorted(r.methods)} {r.path}" for r in routes
                  if not any(isinstance(d.call, Need) for d in r.dependant.dependencies)]
    assert not undeclared, "routes that do not say what they need:\n" + "\n".join(undeclared)

"""The demo fleet: real SSH workers on loopback ports, served by the demo server itself."""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import shutil
import sys
from pathlib import Path

import asyncssh
from sqlmodel import select

from backend import fleet
from backend.core import Backend
from backend.demo.sshd import LocalSSHServer
from backend.fleet import provisioners
from backend.runs import launch, runbooks, schedules
from backend.store.models import HostKey, Pool, Worker
from wire.datadir import DataDir
from wire.pools import ProvisionerSet
from wire.runbook import parse_toml
from wire.server import Policy
from wire.workers import WorkerCreate

log = logging.getLogger("workdeck.demo")

DEV_WEB = "Local Development Web Worker Pool"
PROD_WEB = "Local Production Web Worker Pool"
PROD_DB = "Local Production Database Worker Pool"
TEST_K8S = "Local Test Kubernetes Worker Pool"
BUILD = "Local Build Worker Pool"

POOLS = {
    DEV_WEB: "Web deployments for Development, on this machine",
    PROD_WEB: "Web deployments for Production, on this machine",
    PROD_DB: "Database migrations for Production, on this machine",
    TEST_K8S: "kubectl for the Test cluster, on this machine",
    BUILD: "Builds, on workers made for the work (dynamic) and given back when idle",
}

# name, pools, state: how each worker shows a part of the product.
FLEET = [
    ("d-web-local-worker-01", [DEV_WEB], "trusted"),
    ("d-web-local-worker-02", [DEV_WEB], "trusted"),
    ("p-web-local-worker-01", [PROD_WEB], "trusted"),
    ("p-web-local-worker-02", [PROD_WEB], "trusted"),
    ("p-web-local-worker-03", [PROD_WEB], "maintenance"),
    ("p-db-local-worker-01", [PROD_DB], "trusted"),
    ("p-db-local-worker-02", [PROD_DB], "trusted"),
    ("t-k8s-local-worker-01", [TEST_K8S], "untrusted"),
    ("t-k8s-local-worker-02", [TEST_K8S], "disabled"),
]

# Nagios-style custom check: exit 1 is a warning. A demo worker in maintenance shows it.
ENVIRONMENTS = ["Development", "Test", "Production"]
SCHEDULES = [
    ("nightly-diagnostics", "Collect diagnostics", "Development", "0 3 * * 1-5",
     "Europe/Berlin", {"lines": "2000"}, "skip"),
    ("weekly-log-rotation", "Rotate logs everywhere", "Production", "0 4 * * 0", "UTC", {},
     "once"),
]
RUNBOOKS = Path(__file__).with_name("runbooks")

DEMO_HEALTH_SCRIPT = """\
if [ -e "$HOME/.maintenance" ]; then
  echo "maintenance: $(head -c 200 "$HOME/.maintenance")"
  exit 1
fi
"""


def prepare_demo(backend: Backend, *, exit_with: int | None = None) -> None:
    """Arrange for the demo fleet to start with the server and be registered once.

    With `exit_with`, the server stops when that process (the demo's console) is gone,
    however it went: a closed terminal or a killed console leaves nothing running.
    """
    servers: list[LocalSSHServer] = []

    async def watch_console() -> None:
        while _alive(exit_with):
            await asyncio.sleep(1.0)
        backend.request_stop("the demo console is gone")

    if exit_with is not None:
        backend.extra_tasks.append(watch_console)

    async def run_fleet() -> None:
        try:
            await _start_fleet(backend, servers)
            await asyncio.Event().wait()  # serve until the server shuts down
        finally:
            for server in servers:
                await server.stop()

    backend.extra_tasks.append(run_fleet)


async def _start_fleet(backend: Backend, servers: list[LocalSSHServer]) -> None:
    keys_dir = backend.data_dir.keys_dir
    keys_dir.mkdir(mode=0o700, exist_ok=True)
    key_path = keys_dir / "demo_ed25519"
    if not key_path.exists():
        key = asyncssh.generate_private_key("ssh-ed25519", comment="workdeck demo")
        key.write_private_key(str(key_path))
        key_path.chmod(0o600)
    key = asyncssh.read_private_key(str(key_path))
    authorized = key.export_public_key("openssh").decode().strip()
    fleet_root = backend.data_dir.root / "fleet"
    for name, _pools, state in FLEET:
        root = fleet_root / name
        # Kept with the demo's keys, so a restarted demo server presents the same host
        # keys and its pinned workers stay trusted.
        host_key_path = keys_dir / f"host-{name}"
        if not host_key_path.exists():
            asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(host_key_path))
            host_key_path.chmod(0o600)
        server = LocalSSHServer(root, authorized_keys=[authorized],
                                host_key=asyncssh.read_private_key(str(host_key_path)))
        await server.start()
        servers.append(server)
        if state == "maintenance":
            (root / ".maintenance").write_text("kernel upgrade scheduled by alice")
    await asyncio.to_thread(_register, backend, servers, str(key_path))
    await backend.changed("policy")
    await backend.changed("worker")
    await backend.changed("pool")
    log.info("demo fleet of %d SSH workers listening on loopback", len(servers))


def _register(backend: Backend, servers: list[LocalSSHServer], key_path: str) -> None:
    store = backend.store
    if fleet.worker_count(store) > 1:
        # Registered by an earlier start of this demo server: only the ports moved.
        with store.write() as session:
            for (name, _pools, _state), server in zip(FLEET, servers, strict=True):
                worker = session.exec(select(Worker).where(Worker.name == name)).first()
                if worker is not None:
                    worker.port = server.port
                    session.add(worker)
        return
    with store.write() as session:
        for name, description in POOLS.items():
            session.add(Pool(name=name, description=description))
    fleet.add_workers(store, [
        # An account of its own, as the advisor recommends (the demo's in-process SSH
        # servers take any account name and run as the server's user).
        WorkerCreate(name=name, host=server.host, port=server.port, key_path=key_path,
                     user="deploy", pools=pools, capacity=4)
        for (name, pools, _state), server in zip(FLEET, servers, strict=True)
    ], "demo")
    with store.write() as session:
        for (name, _pools, state), server in zip(FLEET, servers, strict=True):
            worker = session.exec(select(Worker).where(Worker.name == name)).one()
            if state != "untrusted":
                # The demo made these keys itself, so it can vouch for them.
                session.add(HostKey(worker_id=worker.id, public_key=server.host_public_key,
                                    fingerprint=server.fingerprint, trusted_by="demo"))
            if state == "disabled":
                worker.enabled = False
                session.add(worker)
    # Its workers are made on demand, each an SSH server of its own on a new port.
    command = (f"{shlex.quote(sys.executable)} -m backend.demo.provision "
               f"{shlex.quote(str(backend.data_dir.root / 'dynamic'))}")
    provisioners.set_provisioner(store, BUILD, ProvisionerSet(
        create=f"{command} create", destroy=f"{command} destroy", max=3, capacity=2,
        wait_s=5, idle_s=60, timeout_s=30), "demo")
    fleet.set_policy(store, Policy(interval_s=15, custom_script=DEMO_HEALTH_SCRIPT), "demo")
    for environment in ENVIRONMENTS:
        launch.add_environment(store, environment, "demo")
    for path in sorted(RUNBOOKS.glob("*.toml")):
        runbooks.save(store, parse_toml(path.read_text(), path.name), "demo")
    # Two schedules to look at in the Schedules view (their times are days apart: the
    # demo does not launch them while someone watches).
    for name, runbook, environment, cron, zone, variables, missed in SCHEDULES:
        schedules.add_schedule(store, backend.vault, name=name, runbook=runbook,
                               environment=environment, cron=cron, timezone=zone,
                               variables=variables, overlap=False, missed=missed,
                               person=backend.access.account, actor="demo")


def _alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_demo_files(data_dir: DataDir) -> None:
    """Remove a throwaway demo's folder; only ever one that `workdeck demo` made."""
    root = data_dir.root.parent
    if root.name.startswith(DEMO_PREFIX) and data_dir.root.name == "data":
        shutil.rmtree(root, ignore_errors=True)


DEMO_PREFIX = "workdeck-demo-"

"""`workdeck demo`: a throwaway data directory, a server with a demo fleet, the console."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import click

from backend.demo.fleet import DEMO_PREFIX
from console.client import ApiError, Client, Target, start_server
from wire.datadir import DataDir

DEMO_ARGS = ["--demo-fleet"]


def run_demo(*, keep: bool = False) -> None:
    from console.app import run_console

    # A short path under /tmp: the server's Unix socket path must stay under 108 bytes.
    root = Path(tempfile.mkdtemp(prefix=DEMO_PREFIX))
    target = Target(DataDir(root / "data"), server_url=None)
    args = DEMO_ARGS if keep else [*DEMO_ARGS, "--exit-with", str(os.getpid())]
    try:
        click.echo("Starting the demo server and its SSH workers…", err=True)
        start_server(target, extra_args=args)
        run_console(target, autostart_args=args)
    finally:
        if keep:
            click.echo(f"The demo server keeps running: workdeck --data-dir {target.data_dir.root}"
                       " (stop it with `server stop`).", err=True)
        else:
            stop_server(target)
            shutil.rmtree(root, ignore_errors=True)


def stop_server(target: Target, wait: float = 10.0) -> None:
    """Ask the server to stop and wait until it is gone."""
    with Client(target) as client:
        try:
            client.post("/api/server/stop")
        except ApiError:
            return
        deadline = time.monotonic() + wait
        while client.alive() and time.monotonic() < deadline:
            time.sleep(0.05)

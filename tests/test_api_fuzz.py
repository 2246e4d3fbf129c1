"""A schema-driven fuzz of the whole API over real HTTP (schemathesis): no server errors,
no answer that breaks the published schema, no status the schema does not declare."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

from conftest import short_tmp, start_workdeck
from test_runs import THREE_STEPS

from console.client import Client, Target

# Streams never end on their own, and stopping the server ends the fuzz; a provisioner
# runs the commands it is given on this machine (its routes are tested by
# test_dynamic_workers with a real one).
EXCLUDED = ("/api/events", "/api/runs/{run_id}/log", "/api/server/stop",
            "/api/pools/{name}/provisioner")
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance")
BUDGET_S = int(os.environ.get("WORKDECK_FUZZ_S", "50"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_fuzz_of_the_api_finds_nothing():
    root = short_tmp("wd-fuzz-")
    home = root / "home"
    home.mkdir()
    port = free_port()
    data_dir, process = start_workdeck(root, home, ["--listen", f"127.0.0.1:{port}",
                                                    "--plain-http"])
    try:
        with Client(Target(data_dir)) as client:
            # Something behind the routes: a pool, a runbook, an environment, a finished run.
            client.put("/api/settings", {"builtin_worker": True})
            client.post("/api/environments", {"name": "Test"})
            client.post("/api/runbooks", {"toml": THREE_STEPS.replace(
                "[variables.token]\nsensitive = true\n", "")})
            client.post("/api/pools", {"name": "Web Pool"})
        token = data_dir.token_file.read_text().strip()
        schemathesis = shutil.which("schemathesis", path=os.path.dirname(sys.executable))
        assert schemathesis, "schemathesis is not installed (pip install -e .[test])"
        done = subprocess.run(
            [schemathesis, "run", f"http://127.0.0.1:{port}/openapi.json",
             "--header", f"Authorization: Bearer {token}", "--checks", CHECKS,
             # One worker: CPython 3.11 can fail parsing source in two threads at once
             # (hypothesis reads its strategies' source), a runtime error of the fuzzer.
             "--max-time", str(BUDGET_S), "--seed", "1", "--workers", "1",
             # A check of every worker the fuzz made (hosts that resolve nowhere) answers
             # when the last one does: over 20 s once, on a loaded machine.
             "--request-timeout", "60", "--no-color",
             *[arg for path in EXCLUDED for arg in ("--exclude-path", path)]],
            capture_output=True, text=True, timeout=BUDGET_S * 3 + 120)
        # On a failure schemathesis prints each case with the curl command reproducing it.
        assert done.returncode == 0, done.stdout[-20_000:] + done.stderr[-5_000:]
    finally:
        process.terminate()
        process.wait(20)
        shutil.rmtree(root, ignore_errors=True)

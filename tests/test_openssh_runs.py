"""Cancel really stops, against OpenSSH: for root and for an ordinary account."""

from __future__ import annotations

import subprocess
import time

import pytest
from test_runs import import_runbook, launch, printed, wait_run
from waiting import eventually

pytestmark = pytest.mark.openssh


def add_worker(workdeck, sshd, user):
    """An OpenSSH worker logged into as `user`, checked healthy, and a Test environment."""
    workdeck.cli("worker", "add", "t-ssh-local-worker-01", "--host", sshd.host, "--port",
                 str(sshd.port), "--user", user, "--key-path", str(sshd.client_key), "--pool",
                 "Web Pool", "--trust-host-key")
    check = workdeck.cli("check")
    assert check.code == 0, check.out
    workdeck.cli("env", "add", "Test")


def processes(pattern: str) -> list[str]:
    found = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


@pytest.mark.parametrize("account", ["root-or-self", "unprivileged"])
def test_cancel_ends_the_step_and_its_children(workdeck, openssh, tmp_path, account,
                                               unprivileged_user):
    sshd = openssh()
    user = sshd.user if account == "root-or-self" else unprivileged_user
    add_worker(workdeck, sshd, user)
    marker = f"{int(time.time() * 1000) % 100000}"
    import_runbook(workdeck, tmp_path, f"""
name = "Long"
[[steps]]
name = "Sleepy"
pool = "Web Pool"
script = '''
echo started
sleep 7{marker}1 &
( sleep 7{marker}2; echo never ) &
sleep 7{marker}3
'''
""")
    run = launch(workdeck, "Long")
    wait_run(workdeck, run["id"], lambda r: r["steps"][0]["status"] == "running")
    eventually(lambda: len(processes(f"sleep 7{marker}")) == 3, what="the three sleeps")
    assert workdeck.cli("runs", "cancel", str(run["id"])).code == 0
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    assert done["status"] == "cancelled"
    assert processes(f"sleep 7{marker}") == []


def test_a_timed_out_step_is_killed(workdeck, openssh, tmp_path):
    sshd = openssh()
    add_worker(workdeck, sshd, sshd.user)
    import_runbook(workdeck, tmp_path, """
name = "Slow"
[[steps]]
name = "Too slow"
pool = "Web Pool"
timeout = 1
script = "sleep 8123"
""")
    result = workdeck.cli("run", "Slow", "--env", "Test", "--follow")
    assert result.code == 1 and "timed out after 1s" in result.out
    assert processes("sleep 8123") == []


def test_a_frozen_worker_is_noticed_by_keepalive_and_the_step_is_lost(workdeck, openssh,
                                                                       tmp_path):
    import contextlib
    import os
    import signal

    from openssh import _descendants

    sshd = openssh()
    add_worker(workdeck, sshd, sshd.user)
    import_runbook(workdeck, tmp_path, """
name = "Frozen"
[[steps]]
name = "Long"
pool = "Web Pool"
script = "echo before; sleep 120; echo after"
""")
    run = launch(workdeck, "Frozen")
    wait_run(workdeck, run["id"], lambda r: r["steps"][0]["status"] == "running")
    printed(workdeck, run["id"], "before")
    # The machine freezes: its SSH processes stop answering, the TCP connection stays up.
    frozen = _descendants(sshd.pid)
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        # Keepalives every 5 s, three missed: the step is lost within the 15 s bound.
        done = wait_run(workdeck, run["id"], lambda r: r["finished_at"], timeout=40)
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    assert done["status"] == "failed"
    assert done["steps"][0]["status"] == "lost"

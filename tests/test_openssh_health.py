"""Health checks against real OpenSSH sshd on loopback: the truth the fast tests stand for."""

from __future__ import annotations

import json

import pytest
from openssh import HungServer, slow_login_script

pytestmark = pytest.mark.openssh


def add(workdeck, name, sshd, *extra):
    result = workdeck.cli("worker", "add", name, "--host", sshd.host, "--port", str(sshd.port),
                          "--user", sshd.user, "--key-path", str(sshd.client_key), *extra)
    assert result.code == 0, result.err
    return result


def check_one(workdeck, name):
    result = workdeck.cli("check", "--worker", name, "--json")
    [worker] = json.loads(result.out)
    return result.code, worker


def set_timeout(workdeck, seconds):
    with workdeck.client() as client:
        client.put("/api/policy", client.get("/api/policy") | {"timeout_s": seconds})


def test_healthy_worker_over_openssh(workdeck, openssh):
    sshd = openssh()
    add(workdeck, "p-db-local-worker-01", sshd, "--trust-host-key", "--pool", "DB Pool")
    code, worker = check_one(workdeck, "p-db-local-worker-01")
    assert code == 0, worker["reason"]
    assert worker["status"] == "healthy"
    assert worker["host_key"] == sshd.fingerprint()
    assert worker["facts"]["os"] and worker["facts"]["cpus"] >= 1
    mounts = [d["mount"] for d in worker["facts"]["disks"]]
    assert "/" in mounts
    # A second check reuses the connection: no new connect time is recorded for it.
    first_connect = worker["connect_ms"]
    code, again = check_one(workdeck, "p-db-local-worker-01")
    assert code == 0 and again["connect_ms"] == first_connect
    with workdeck.client() as client:
        assert client.get("/api/server")["connections"] == 1
        history = client.get("/api/workers/p-db-local-worker-01/history")
    assert [h["status"] for h in history] == ["healthy", "healthy"]


def test_changed_host_key_over_openssh(workdeck, openssh):
    sshd = openssh()
    add(workdeck, "p-web-local-worker-01", sshd, "--trust-host-key")
    assert check_one(workdeck, "p-web-local-worker-01")[0] == 0
    old = sshd.fingerprint()
    sshd.stop()
    sshd.regenerate_host_key()
    sshd.start()
    code, worker = check_one(workdeck, "p-web-local-worker-01")
    assert code == 2
    assert worker["status"] == "unavailable"
    assert "HOST KEY CHANGED" in worker["reason"] and "man-in-the-middle" in worker["reason"]
    assert worker["host_key"] == old
    assert worker["presented_host_key"] == sshd.fingerprint()
    audit = json.loads(workdeck.cli("audit", "--json").out)
    assert any(e["action"] == "worker.hostkey_changed" and e["target"] ==
               "p-web-local-worker-01" for e in audit)
    # The operator verifies the new key and trusts it: the worker is healthy again.
    assert workdeck.cli("worker", "trust", "p-web-local-worker-01", "--fingerprint",
                        sshd.fingerprint()).code == 0
    assert check_one(workdeck, "p-web-local-worker-01")[0] == 0


def test_stopped_server_then_back(workdeck, openssh):
    sshd = openssh()
    add(workdeck, "d-web-local-worker-01", sshd, "--trust-host-key")
    assert check_one(workdeck, "d-web-local-worker-01")[0] == 0
    sshd.stop()
    code, worker = check_one(workdeck, "d-web-local-worker-01")
    assert code == 2 and worker["status"] == "unavailable"
    assert "connection refused" in worker["reason"] or "lost" in worker["reason"]
    sshd.start()
    # The dropped connection is replaced by a new one on the next check.
    assert check_one(workdeck, "d-web-local-worker-01")[0] == 0


def test_slow_login_shell_times_out(workdeck, openssh):
    set_timeout(workdeck, 2)
    sshd = openssh(force_command=slow_login_script(openssh_dir(workdeck), 30))
    add(workdeck, "t-slow-local-worker-01", sshd, "--trust-host-key")
    code, worker = check_one(workdeck, "t-slow-local-worker-01")
    assert code == 2
    assert worker["status"] == "unavailable" and worker["reason"] == "timed out after 2s"


def test_hung_host_times_out(workdeck, client_key):
    set_timeout(workdeck, 2)
    with HungServer() as hung:
        workdeck.cli("worker", "add", "t-hung-local-worker-01", "--host", hung.host, "--port",
                     str(hung.port), "--key-path", str(client_key))
        code, worker = check_one(workdeck, "t-hung-local-worker-01")
    assert code == 2
    assert worker["status"] == "unavailable"
    assert "timed out" in worker["reason"]


def openssh_dir(workdeck):
    folder = workdeck.data_dir.root.parent / "scripts"
    folder.mkdir(exist_ok=True)
    return folder

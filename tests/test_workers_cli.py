"""Workers and pools through the command line against a real server and real SSH servers."""

from __future__ import annotations

import json

from conftest import both_stores
from waiting import eventually

from backend.store.models import BUILTIN_WORKER

pytestmark = both_stores


def add(workdeck, name, server, key, *extra):
    return workdeck.cli("worker", "add", name, "--host", server.host, "--port",
                        str(server.port), "--key-path", str(key), *extra)


def wait_for(predicate, timeout=10.0):
    return eventually(predicate, timeout=timeout)


def test_add_check_and_list_a_worker(workdeck, ssh_servers, client_key):
    server = ssh_servers()
    result = add(workdeck, "p-web-local-worker-01", server, client_key, "--pool", "Web Pool",
                 "--trust-host-key")
    assert result.code == 0, result.err
    assert "Added worker p-web-local-worker-01" in result.out

    check = workdeck.cli("check", "--json")
    assert check.code == 0, check.out + check.err
    [worker] = json.loads(check.out)
    for field in ("name", "host", "port", "user", "pools", "enabled", "capacity", "status",
                  "reason", "checked_at", "latency_ms", "facts"):
        assert field in worker
    assert worker["status"] == "healthy"
    assert worker["pools"] == ["Web Pool"]
    assert worker["host_key"] == server.fingerprint
    facts = worker["facts"]
    assert facts["cpus"] >= 1 and len(facts["load"]) == 3
    assert facts["mem_total_mb"] > 0 and facts["mem_available_mb"] > 0
    assert {d["mount"] for d in facts["disks"]} and all(d["free_mb"] > 0 for d in facts["disks"])
    assert facts["kernel"].startswith("Linux")
    assert worker["latency_ms"] > 0

    listed = workdeck.cli("worker", "list")
    assert "p-web-local-worker-01" in listed.out and "healthy" in listed.out
    shown = workdeck.cli("worker", "show", "p-web-local-worker-01")
    assert server.fingerprint in shown.out and "Web Pool" in shown.out

    pools = json.loads(workdeck.cli("pool", "list", "--json").out)
    web = next(p for p in pools if p["name"] == "Web Pool")
    assert web["members"] == ["p-web-local-worker-01"] and web["healthy_workers"] == 1
    assert (web["workers"], web["capacity"], web["leased"], web["queued"]) == (1, 4, 0, 0)
    assert web["utilization"] == 0.0


def test_untrusted_key_is_unavailable_until_trusted(workdeck, ssh_servers, client_key):
    server = ssh_servers()
    assert add(workdeck, "d-web-local-worker-01", server, client_key).code == 0
    check = workdeck.cli("check", "--json")
    assert check.code == 2
    [worker] = json.loads(check.out)
    assert worker["status"] == "unavailable"
    assert "not trusted" in worker["reason"] and server.fingerprint in worker["reason"]
    assert worker["presented_host_key"] == server.fingerprint
    assert server.sessions == 0  # nothing ran on a host that was not trusted

    wrong = workdeck.cli("worker", "trust", "d-web-local-worker-01", "--fingerprint",
                         "SHA256:AAAA")
    assert wrong.code == 1 and "nothing was trusted" in wrong.err
    assert workdeck.cli("check").code == 2

    trusted = workdeck.cli("worker", "trust", "d-web-local-worker-01", "--fingerprint",
                           server.fingerprint)
    assert trusted.code == 0, trusted.err
    assert workdeck.cli("check").code == 0
    audit = json.loads(workdeck.cli("audit", "--json").out)
    trust = next(e for e in audit if e["action"] == "worker.trust")
    assert trust["target"] == "d-web-local-worker-01" and server.fingerprint in trust["detail"]
    # Who: the server's account, as the socket proves it (never what a client says).
    import getpass

    assert trust["actor"] == f"{getpass.getuser()} (socket)"


def test_key_in_known_hosts_counts_as_trusted(workdeck, ssh_servers, client_key):
    server = ssh_servers()
    known = workdeck.home / ".ssh" / "known_hosts"
    known.write_text(f"[{server.host}]:{server.port} {server.host_public_key}\n")
    assert add(workdeck, "p-db-local-worker-01", server, client_key).code == 0
    assert workdeck.cli("check").code == 0
    worker = json.loads(workdeck.cli("worker", "show", "p-db-local-worker-01", "--json").out)
    assert worker["host_key"] == server.fingerprint  # pinned from known_hosts


def test_changed_key_is_refused_and_old_key_stays_pinned(workdeck, ssh_servers, client_key):
    first = ssh_servers()
    assert add(workdeck, "p-web-local-worker-02", first, client_key, "--trust-host-key").code == 0
    assert workdeck.cli("check").code == 0
    port = first.port
    ssh_servers.stop(first)
    impostor = ssh_servers(port=port)  # same address, new host key
    check = workdeck.cli("check", "--json")
    assert check.code == 2
    [worker] = json.loads(check.out)
    assert worker["status"] == "unavailable"
    assert "HOST KEY CHANGED" in worker["reason"] and "man-in-the-middle" in worker["reason"]
    assert worker["host_key"] == first.fingerprint
    assert worker["presented_host_key"] == impostor.fingerprint
    assert impostor.sessions == 0
    events = json.loads(workdeck.cli("audit", "--json").out)
    assert any(e["action"] == "worker.hostkey_changed" for e in events)
    # Checking again does not flood the audit log with the same refusal.
    workdeck.cli("check")
    events = json.loads(workdeck.cli("audit", "--json").out)
    assert sum(e["action"] == "worker.hostkey_changed" for e in events) == 1


def test_exit_codes_follow_the_worst_status(workdeck, ssh_servers, client_key):
    server = ssh_servers()
    assert add(workdeck, "w-ok", server, client_key, "--trust-host-key").code == 0
    assert workdeck.cli("check").code == 0
    script = server.root.parent / "health.sh"
    script.write_text('test -e "$HOME/flag" && { echo "flag is up"; exit 1; }; exit 0\n')
    result = workdeck.cli("policy", "--custom-script", str(script))
    assert result.code == 0 and "custom script   yes" in result.out
    (server.root / "flag").write_text("x")
    check = workdeck.cli("check", "--json")
    assert check.code == 1
    assert json.loads(check.out)[0]["reason"] == "custom health check: flag is up"
    with workdeck.client() as client:
        client.put("/api/policy", client.get("/api/policy") | {
            "custom_script": 'echo "database unreachable"; exit 2'})
    check = workdeck.cli("check", "--json")
    assert check.code == 2
    worker = json.loads(check.out)[0]
    assert worker["status"] == "unhealthy"
    assert worker["reason"] == "custom health check failed: database unreachable"


def test_disk_and_load_thresholds_warn(workdeck, ssh_servers, client_key):
    server = ssh_servers()
    assert add(workdeck, "w-disk", server, client_key, "--trust-host-key").code == 0
    with workdeck.client() as client:
        client.put("/api/policy", client.get("/api/policy") | {
            "disk_free_warning_mb": 10 ** 12})
    check = workdeck.cli("check", "--json")
    assert check.code == 1
    assert "free on /" in json.loads(check.out)[0]["reason"]
    with workdeck.client() as client:
        client.put("/api/policy", client.get("/api/policy") | {
            "disk_free_warning_mb": 0, "load_warning_factor": 0.000001})
    check = workdeck.cli("check", "--json")
    reason = json.loads(check.out)[0]["reason"]
    # An idle machine can have a load of exactly 0.00, which no factor exceeds.
    assert check.code == 0 or "load" in reason


def test_bad_input_gets_one_sentence_and_changes_nothing(workdeck, ssh_servers, client_key,
                                                         tmp_path):
    server = ssh_servers()
    assert add(workdeck, "w-1", server, client_key).code == 0
    def stored():
        # What the user stored, not what checks keep refreshing (checked_at, latency...).
        keys = ("name", "host", "port", "user", "key_path", "pools", "capacity", "enabled")
        return [{k: w[k] for k in keys}
                for w in json.loads(workdeck.cli("worker", "list", "--json").out)]

    before = stored()
    cases = [
        (["worker", "add", "w-2", "--host", "not a host"], "is not a valid host"),
        (["worker", "add", "w-2", "--host", "h", "--port", "0"], "between 1 and 65535"),
        (["worker", "add", "w-2", "--host", "h", "--key-path", str(tmp_path / "nope")],
         "does not exist"),
        (["worker", "add", "w 2", "--host", "h"], "contains a space"),
        (["worker", "add", "w-1", "--host", "h"], "already exists"),
        (["worker", "show", "ghost"], "No worker is named 'ghost'"),
        (["worker", "trust", "ghost"], "No worker is named 'ghost'"),
        (["check", "--worker", "ghost"], "No worker is named 'ghost'"),
        (["check", "--pool", "ghost"], "No pool is named 'ghost'"),
    ]
    bad_key = tmp_path / "not-a-key"
    bad_key.write_text("hello")
    cases.append((["worker", "add", "w-2", "--host", "h", "--key-path", str(bad_key)],
                  "is not an SSH private key"))
    for args, expected in cases:
        result = workdeck.cli(*args)
        assert result.code != 0, args
        assert expected in result.err, (args, result.err)
        assert "Traceback" not in result.err and result.err.count("\n") == 1, result.err
    assert stored() == before


def test_import_inventory_is_all_or_nothing(workdeck, ssh_servers, client_key, tmp_path):
    a, b = ssh_servers(), ssh_servers()
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"""
[web]
p-web-local-worker-01 ansible_host={a.host} ansible_port={a.port}
p-web-local-worker-02 ansible_host={b.host} ansible_port={b.port}

[web:vars]
ansible_ssh_private_key_file={client_key}
""")
    result = workdeck.cli("worker", "import", str(inventory), "--pool", "Imported",
                          "--trust-host-key")
    assert result.code == 0, result.err
    assert "Imported 2 workers" in result.out
    workers = json.loads(workdeck.cli("worker", "list", "--json").out)
    assert {w["name"] for w in workers} == {"p-web-local-worker-01", "p-web-local-worker-02"}
    assert all(w["pools"] == ["Imported", "web"] for w in workers)
    assert workdeck.cli("check").code == 0

    again = workdeck.cli("worker", "import", str(inventory))
    assert again.code == 1 and "already exist" in again.err

    broken = tmp_path / "broken.ini"
    broken.write_text("[db]\np-db-local-worker-01 ansible_port=99999\n")
    result = workdeck.cli("worker", "import", str(broken))
    assert result.code == 1 and "line 2" in result.err
    assert len(json.loads(workdeck.cli("worker", "list", "--json").out)) == 2


def test_unreachable_hosts_say_why(workdeck, client_key, ssh_servers):
    server = ssh_servers()
    ssh_servers.stop(server)  # nothing listens on its port any more
    workdeck.cli("worker", "add", "w-refused", "--host", "127.0.0.1", "--port",
                 str(server.port), "--key-path", str(client_key))
    workdeck.cli("worker", "add", "w-dns", "--host", "no-such-host.invalid", "--key-path",
                 str(client_key))
    check = workdeck.cli("check", "--json")
    assert check.code == 2
    reasons = {w["name"]: w["reason"] for w in json.loads(check.out)}
    assert "connection refused" in reasons["w-refused"]
    assert "cannot resolve" in reasons["w-dns"]


def test_wrong_credentials_say_login_refused(workdeck, ssh_servers, tmp_path):
    import asyncssh

    server = ssh_servers()
    other = tmp_path / "other_key"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(other))
    workdeck.cli("worker", "add", "w-auth", "--host", server.host, "--port", str(server.port),
                 "--key-path", str(other), "--trust-host-key")
    [worker] = json.loads(workdeck.cli("check", "--json").out)
    assert worker["status"] == "unavailable" and "login refused" in worker["reason"]


def test_enable_disable_remove_and_pools(workdeck, ssh_servers, client_key):
    server = ssh_servers()
    add(workdeck, "w-x", server, client_key, "--trust-host-key")
    assert workdeck.cli("worker", "disable", "w-x").code == 0
    [worker] = json.loads(workdeck.cli("check", "--json").out)
    assert worker["status"] == "disabled"
    assert workdeck.cli("worker", "enable", "w-x").code == 0
    assert workdeck.cli("check").code == 0

    assert workdeck.cli("pool", "add", "Azure Central US Production Worker Pool",
                        "--description", "prod").code == 0
    dup = workdeck.cli("pool", "add", "Azure Central US Production Worker Pool")
    assert dup.code == 1 and "already exists" in dup.err
    shown = json.loads(workdeck.cli("pool", "show", "Azure Central US Production Worker Pool",
                                    "--json").out)
    assert shown["description"] == "prod" and shown["members"] == []

    assert workdeck.cli("worker", "remove", "w-x").code == 0
    assert json.loads(workdeck.cli("worker", "list", "--json").out) == []
    actions = [e["action"] for e in json.loads(workdeck.cli("audit", "--json").out)]
    for action in ("worker.add", "worker.disable", "worker.enable", "pool.add",
                   "worker.remove"):
        assert action in actions


def test_builtin_worker_is_on_by_default_and_can_be_switched_off(workdeck):
    assert workdeck.cli("settings", "--builtin-worker", "on").code == 0
    workers = json.loads(workdeck.cli("worker", "list", "--json").out)
    [builtin] = workers
    assert builtin["name"] == BUILTIN_WORKER and builtin["builtin"]
    assert builtin["pools"] == ["Default Worker Pool"]
    assert "(built-in)" in workdeck.cli("worker", "list").out
    [checked] = json.loads(workdeck.cli("check", "--json").out)
    assert checked["status"] == "healthy" and checked["facts"]["cpus"] >= 1
    removal = workdeck.cli("worker", "remove", BUILTIN_WORKER)
    assert removal.code == 1 and "turn it off" in removal.err
    assert workdeck.cli("settings", "--builtin-worker", "off").code == 0
    assert json.loads(workdeck.cli("worker", "list", "--json").out) == []


def test_server_status_and_stop(workdeck):
    status = workdeck.cli("server", "status", "--json")
    assert status.code == 0 and json.loads(status.out)["running"] is True
    assert workdeck.cli("server", "stop").code == 0
    assert workdeck.process.wait(10) == 0
    assert not workdeck.data_dir.socket.exists()
    stopped = workdeck.cli("server", "status")
    assert stopped.code == 3 and "No server is running" in stopped.out


def test_tcp_api_requires_the_token(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = tmp_path / "tcp"
    env = {**os.environ, "WORKDECK_TOKEN": "s3cret-token"}
    server = subprocess.Popen([sys.executable, "-m", "console.cli", "--data-dir", str(data),
                               "server", "--listen", f"127.0.0.1:{port}", "--plain-http"],
                              env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        def answer():
            try:
                return httpx.get(f"{url}/api/server")
            except httpx.ConnectError:
                return None

        refused = eventually(answer, what="the TCP server answering")
        assert refused.status_code == 401 and "token" in refused.json()["detail"]
        allowed = httpx.get(f"{url}/api/server",
                            headers={"Authorization": "Bearer s3cret-token"})
        assert allowed.status_code == 200
        from click.testing import CliRunner

        from console.cli import cli

        result = CliRunner(env={"WORKDECK_TOKEN": "s3cret-token"}).invoke(
            cli, ["--server", url, "server", "status", "--json"])
        assert result.exit_code == 0 and '"running": true' in result.stdout
        result = CliRunner(env={"WORKDECK_TOKEN": "wrong"}).invoke(
            cli, ["--server", url, "worker", "list"])
        assert result.exit_code != 0 and "token" in result.stderr
    finally:
        server.terminate()
        server.wait(10)


def test_renamed_flags_still_work_and_help_shows_only_the_new_names(workdeck, ssh_servers,
                                                                    client_key, tmp_path):
    # Flags renamed for one name per idea keep their old names for one release (README,
    # "Changed"), unlisted in --help.
    server = ssh_servers()
    assert workdeck.cli("worker", "add", "w-old", "--host", server.host, "--port",
                        str(server.port), "--key", str(client_key)).code == 0
    with workdeck.client() as client:
        assert client.get("/api/workers/w-old")["key_path"] == str(client_key)
    script = tmp_path / "check.sh"
    script.write_text("exit 0\n")
    result = workdeck.cli("policy", "--disk-warning-mb", "123", "--load-factor", "7",
                          "--script", str(script), "--json")
    assert result.code == 0, result.err
    policy = json.loads(result.out)
    assert (policy["disk_free_warning_mb"], policy["load_warning_factor"],
            policy["custom_script"]) == (123, 7, "exit 0\n")
    shown = workdeck.cli("policy", "--help").out + workdeck.cli("worker", "add", "--help").out
    for new, old in (("--disk-free-warning-mb", "--disk-warning-mb"),
                     ("--load-warning-factor", "--load-factor"),
                     ("--custom-script", "--script"), ("--key-path", "--key "),
                     ("--use-agent", "--agent")):
        assert new in shown and old not in shown, (new, old)


def test_the_built_in_workers_name_is_its_own(workdeck):
    refused = workdeck.cli("worker", "add", "built-in-worker", "--host", "127.0.0.1")
    assert refused.code == 1
    assert refused.err.strip() == ("workdeck: 'built-in-worker' is the built-in worker's "
                                   "name: give this worker another.")
    # Off and on again (the API fuzz found a 500 here once a worker took the name).
    assert workdeck.cli("settings", "--builtin-worker", "on").code == 0
    assert workdeck.cli("settings", "--builtin-worker", "off").code == 0
    with workdeck.client() as client:
        assert "built-in-worker" not in {w["name"] for w in client.get("/api/workers")}

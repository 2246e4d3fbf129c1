"""`GET /metrics` scraped over real HTTP during and after runs, parsed with
prometheus-client's own parser: the figures agree with `pool show` and `runs list`;
loopback reads it without a token, a token must be a viewer's; labels stay bounded."""

from __future__ import annotations

import json
from collections import Counter

import httpx
from openssh import free_port
from prometheus_client.parser import text_string_to_metric_families
from test_runs import import_runbook, setup_fleet, wait_run
from test_schedules_server import start, stop
from waiting import eventually

RUNBOOKS = """
name = "Hold"
[[steps]]
name = "Wait for the go"
pool = "Web Pool"
script = "echo holding; while [ ! -e {tmp}/go ]; do sleep 0.05; done; echo done"
"""
FAILING = """
name = "Break"
[[steps]]
name = "Fail"
pool = "Web Pool"
script = "echo one; echo two >&2; exit 4"
"""


def scrape(url: str, token: str | None = None) -> dict[str, dict[tuple, float]]:
    """{sample name: {labels as sorted pairs: value}}."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = httpx.get(f"{url}/metrics", headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    found: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = \
                sample.value
    return found


def value(found, name, **labels) -> float:
    return found.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


def pool_shown(workdeck, pool="Web Pool"):
    result = workdeck.cli("pool", "show", pool, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_metrics_agree_with_pool_show_and_runs_list(workdeck, ssh_servers, client_key,
                                                     tmp_path):
    servers = setup_fleet(workdeck, ssh_servers, client_key, count=2)
    import_runbook(workdeck, tmp_path, RUNBOOKS.format(tmp=tmp_path))
    import_runbook(workdeck, tmp_path, FAILING, name="failing.toml")
    port = free_port()
    stop(workdeck)
    start(workdeck, ("--listen", f"127.0.0.1:{port}", "--plain-http"))
    url = f"http://127.0.0.1:{port}"
    assert workdeck.cli("check").code == 0

    # During a run: one slot held.
    held = workdeck.cli("run", "Hold", "--env", "Test")
    run_id = int(held.out)
    wait_run(workdeck, run_id, lambda r: r["steps"][0]["status"] == "running")
    found = eventually(lambda: (f := scrape(url)) and value(
        f, "workdeck_pool_slots_in_use", pool="Web Pool") == 1 and f,
        what="the held slot in the metrics")
    shown = pool_shown(workdeck)
    assert value(found, "workdeck_pool_slots_capacity", pool="Web Pool") == shown["capacity"]
    assert value(found, "workdeck_pool_slots_in_use", pool="Web Pool") == shown["leased"] == 1
    assert value(found, "workdeck_pool_queue_length", pool="Web Pool") == shown["queued"]
    assert value(found, "workdeck_pool_healthy_workers", pool="Web Pool") == \
        shown["healthy_workers"] == 2
    assert value(found, "workdeck_workers", pool="Web Pool", status="healthy") == 2
    assert value(found, "workdeck_runs_executing") == 1
    assert value(found, "workdeck_runs", runbook="Hold", environment="Test",
                 status="running") == 1
    (tmp_path / "go").touch()
    wait_run(workdeck, run_id, lambda r: r["finished_at"])
    failed = int(workdeck.cli("run", "Break", "--env", "Test").out)
    wait_run(workdeck, failed, lambda r: r["finished_at"])

    # A worker gone: its check fails, counted by a bounded reason.
    ssh_servers.stop(servers[1])
    assert workdeck.cli("check").code == 2  # a worker unavailable: said in its exit status
    found = eventually(lambda: (f := scrape(url)) and value(
        f, "workdeck_runs_finished_total", runbook="Break", environment="Test",
        status="failed") == 1 and value(f, "workdeck_pool_healthy_workers",
                                        pool="Web Pool") == 1 and f,
        what="the finished runs counted, the gone worker seen")
    listed = json.loads(workdeck.cli("runs", "list", "--json").out)
    by_status = Counter((r["runbook"], r["environment"], r["status"]) for r in listed)
    stored = {labels: v for labels, v in found["workdeck_runs"].items()}
    assert {tuple(dict(k)[n] for n in ("runbook", "environment", "status")): v
            for k, v in stored.items()} == by_status
    assert value(found, "workdeck_runs_finished_total", runbook="Hold", environment="Test",
                 status="succeeded") == 1
    assert value(found, "workdeck_run_duration_seconds_count", runbook="Hold",
                 environment="Test", status="succeeded") == 1
    assert value(found, "workdeck_step_duration_seconds_count", pool="Web Pool") == 2
    assert value(found, "workdeck_queue_wait_seconds_count", pool="Web Pool") == 2
    assert value(found, "workdeck_check_latency_seconds_count") >= 2
    failures = {dict(k)["reason"]: v for k, v in
                found.get("workdeck_check_failures_total", {}).items()
                if dict(k)["status"] == "unavailable"}
    assert sum(failures.values()) >= 1 and set(failures) <= {"refused", "unreachable",
                                                               "timeout"}, failures
    shown = pool_shown(workdeck)
    assert value(found, "workdeck_pool_healthy_workers", pool="Web Pool") == \
        shown["healthy_workers"] == 1
    assert value(found, "workdeck_workers", pool="Web Pool", status="unavailable") == 1
    assert value(found, "workdeck_log_lines_total") >= 4  # holding, done, one, two, ...
    assert value(found, "workdeck_log_bytes_total") > value(found, "workdeck_log_lines_total")
    assert value(found, "workdeck_store_refusing") == 0
    # Bounded labels: no run's id, no free text.
    names = {name for samples in found.values() for labels in samples for name, _ in labels}
    assert names <= {"pool", "status", "runbook", "environment", "reason", "version", "node",
                     "kind", "le"}, names

    # Loopback reads without a token; a token given must be valid, and a viewer's.
    bad = httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer nonsense"})
    assert bad.status_code == 401
    assert workdeck.cli("user", "add", "nobody").code == 0
    none = workdeck.cli("token", "create", "--user", "nobody").out.split()[0]
    refused = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {none}"})
    assert (refused.status_code, refused.json()["detail"]) == (
        403, "nobody (no role) may not see this.")
    assert workdeck.cli("user", "grant", "nobody", "viewer").code == 0
    assert "workdeck_workers" in scrape(url, none)
    # Only /metrics is open on loopback without a token.
    assert httpx.get(f"{url}/api/workers").status_code == 401


def test_the_exposition_reads_as_prometheus_clients_own():
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

    from backend.metrics import exposition

    registry = CollectorRegistry()
    Counter("c", "a counter\nwith \\ a line", ["pool"], registry=registry).labels(
        'we"ird\\pool\nname').inc(3)
    Gauge("g", "a gauge", registry=registry).set(float("inf"))
    histogram = Histogram("h", "a histogram", ["pool"], buckets=(1, 10), registry=registry)
    for seconds in (0.5, 5, 50):
        histogram.labels("Web Pool").observe(seconds)

    def read(text: str):
        return [(f.name, f.type, f.documentation,
                 sorted((s.name, tuple(sorted(s.labels.items())), s.value)
                        for s in f.samples))
                for f in text_string_to_metric_families(text)]

    ours = exposition(registry).decode()
    assert read(ours) == read(generate_latest(registry).decode())
    assert 'c_total{pool="we\\"ird\\\\pool\\nname"} 3.0' in ours

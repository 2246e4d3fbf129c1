"""Notifications against a real HTTP receiver on loopback, started by the test: the body
and its signature, retries when the receiver answers 500 then 200, a receiver that never
answers holding up nothing else, Slack's format, environment and pool filters, workers
unavailable and pools short of healthy workers, `notify test`, and refusals."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from test_runs import import_runbook, setup_fleet, wait_run
from waiting import eventually

SECRET = "a-signing-secret-of-some-length"
BREAK = """
name = "Break"
[[steps]]
name = "Prepare"
pool = "Web Pool"
script = "echo prepared"
[[steps]]
name = "Apply"
pool = "Web Pool"
script = "echo applying; exit 4"
"""
FINE = """
name = "Fine"
[[steps]]
name = "Say"
pool = "Web Pool"
script = "echo fine"
"""
APPROVE = """
name = "Approve"
[[steps]]
name = "Look"
manual = "check the graphs, then approve"
"""


class Receiver:
    """An HTTP server on loopback that keeps every request; /flaky answers 500 once, then
    200; /fail always 500; /hang never answers (until the test ends)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.release = threading.Event()
        self.flaky_failed = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name for it
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((self.path, dict(self.headers.items()), body))
                if self.path == "/hang":
                    receiver.release.wait(120)
                    return
                status = 200
                if self.path == "/fail" or (self.path == "/flaky"
                                            and not receiver.flaky_failed):
                    receiver.flaky_failed = receiver.flaky_failed or self.path == "/flaky"
                    status = 500
                answer = b"ok" if status == 200 else b"the receiver broke"
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                """Quiet: the test reads the requests kept, not a log on stderr."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def at(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        return [(headers, body) for where, headers, body in list(self.requests)
                if where == path]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    running = Receiver()
    yield running
    running.close()


def add(workdeck, name, url, *options):
    result = workdeck.cli("notify", "add", name, "--url", url, *options)
    assert result.code == 0, result.err
    return result.out


def shown(workdeck, name):
    return json.loads(workdeck.cli("notify", "show", name, "--json").out)


def test_run_events_reach_their_receivers_signed_retried_and_held_up_by_none(
        workdeck, ssh_servers, client_key, tmp_path, receiver):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    for number, text in enumerate((BREAK, FINE, APPROVE)):
        import_runbook(workdeck, tmp_path, text, name=f"r{number}.toml")
    (tmp_path / "secret").write_text(SECRET + "\n")
    said = add(workdeck, "ops", f"{receiver.url}/ok", "--on", "run-failed,run-waiting",
               "--secret", f"@{tmp_path / 'secret'}")
    assert said == (f"Notification ops: {receiver.url}/… (json) is told of run-failed, "
                    "run-waiting; bodies signed. `workdeck --data-dir "
                    f"{workdeck.data_dir.root} notify test ops` sends one now.\n")
    add(workdeck, "hang", f"{receiver.url}/hang", "--on", "run-failed", "--on",
        "run-succeeded,run-waiting")
    add(workdeck, "flaky", f"{receiver.url}/flaky", "--on", "run-failed")
    add(workdeck, "chat", f"{receiver.url}/slack", "--format", "slack", "--on", "run-failed")
    add(workdeck, "prod", f"{receiver.url}/prod", "--on", "run-failed", "--env",
        "Production")

    failed = wait_run(workdeck, int(workdeck.cli("run", "Break", "--env", "Test").out),
                      lambda r: r["finished_at"])
    assert failed["status"] == "failed"
    [(headers, body)] = eventually(lambda: receiver.at("/ok"), what="the failure told")
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Workdeck-Signature"] == f"sha256={digest}"
    assert headers["X-Workdeck-Event"] == "run-failed"
    told = json.loads(body)
    assert told["event"] == "run-failed" and told["link"] == f"run {failed['id']}"
    assert told["who"] == failed["actor"]
    run = told["run"]
    assert (run["id"], run["runbook"], run["environment"], run["status"]) == (
        failed["id"], "Break", "Test", "failed")
    assert run["step"]["position"] == 2 and run["step"]["name"] == "Apply"
    assert run["step"]["worker"] == "t-web-local-worker-01"
    assert run["step"]["exit_status"] == 4

    # Slack's incoming-webhook message.
    [(_headers, body)] = eventually(lambda: receiver.at("/slack"), what="the Slack message")
    assert json.loads(body) == {"text": (
        f":x: Run {failed['id']} *Break* on Test failed: step 2 (Apply) on "
        f"t-web-local-worker-01: {failed['steps'][1]['reason']}. Launched by "
        f"{failed['actor']}. `workdeck runs show {failed['id']}`")}
    # 500, then 200 on the retry: delivered at the second attempt, both answers kept.
    flaky = eventually(lambda: (s := shown(workdeck, "flaky"))["last"]["status"]
                       == "delivered" and s, what="the retry delivered", timeout=30)
    assert flaky["last"]["attempts"] == 2
    assert flaky["last"]["answer"].startswith("200 OK in ")
    assert len(receiver.at("/flaky")) == 2
    assert receiver.at("/hang")  # asked, and never answers

    # While /hang holds its connection, the next run and its notifications go on.
    fine = wait_run(workdeck, int(workdeck.cli("run", "Fine", "--env", "Test").out),
                    lambda r: r["finished_at"])
    assert fine["status"] == "succeeded"
    waiting = int(workdeck.cli("run", "Approve", "--env", "Test").out)
    eventually(lambda: len(receiver.at("/ok")) == 2, what="the wait told past /hang")
    told = json.loads(receiver.at("/ok")[1][1])
    assert told["event"] == "run-waiting" and told["run"]["id"] == waiting
    assert told["run"]["waiting"]["prompt"] == "manual step 1: check the graphs, then approve"
    assert not receiver.at("/prod")  # only Production's runs
    assert shown(workdeck, "hang")["last"]["status"] == "pending"

    tested = workdeck.cli("notify", "test", "ops")
    assert tested.code == 0 and tested.out.startswith("delivered: 200 OK in "), tested.out
    test_body = json.loads(receiver.at("/ok")[-1][1])
    assert test_body["event"] == "test" and test_body["notification"] == "ops"
    add(workdeck, "broken", f"{receiver.url}/fail")
    broke = workdeck.cli("notify", "test", "broken")
    assert (broke.code, broke.out) == (1, "failed: 500 Internal Server Error: the receiver "
                                          "broke\n")
    listed = workdeck.cli("notify", "list").out
    assert "ops" in listed and f"{receiver.url}/…" in listed
    assert "flaky" in listed and "run-failed delivered" in listed


def test_workers_unavailable_and_pools_short_are_told(workdeck, ssh_servers, client_key,
                                                       receiver):
    servers = setup_fleet(workdeck, ssh_servers, client_key, count=2)
    # The worker left up must be found healthy however loaded the machine (a check that
    # times out would make it unavailable too, and the pool's figures other than these).
    with workdeck.client() as client:
        client.put("/api/policy", client.get("/api/policy") | {"timeout_s": 30})
    add(workdeck, "fleet", f"{receiver.url}/ok", "--on", "worker-unavailable,pool-short",
        "--pool", "Web Pool")
    add(workdeck, "elsewhere", f"{receiver.url}/other", "--on", "worker-unavailable",
        "--pool", "Default Worker Pool")
    ssh_servers.stop(servers[1])
    assert workdeck.cli("check").code == 2
    told = eventually(lambda: len(receiver.at("/ok")) == 2 and [
        json.loads(body) for _headers, body in receiver.at("/ok")],
        timeout=60, what="the worker and the pool told")
    by_event = {body["event"]: body for body in told}
    worker = by_event["worker-unavailable"]["worker"]
    assert worker["name"] == "t-web-local-worker-02" and worker["status"] == "unavailable"
    assert worker["pools"] == ["Web Pool"] and worker["reason"]
    assert by_event["worker-unavailable"]["link"] == "workers t-web-local-worker-02"
    pool = by_event["pool-short"]["pool"]
    assert (pool["name"], pool["healthy_workers"], pool["workers"]) == ("Web Pool", 1, 2)
    assert not receiver.at("/other")
    # Checked again while still down: no news, nothing more told.
    assert workdeck.cli("check").code == 2
    assert len(receiver.at("/ok")) == 2


def test_a_notification_is_refused_with_a_sentence(workdeck, tmp_path):
    for args, said in [
            (("--url", "ftp://example.org/x"), "'ftp://example.org/x' is not an http:// or "
                                               "https:// URL with a host."),
            (("--url", "https://example.org", "--on", "run-exploded"),
             "No event is named 'run-exploded' (known: run-failed, run-succeeded, "
             "run-waiting, worker-unavailable, pool-short)."),
            (("--url", "https://example.org", "--env", "Mars"),
             "No environment is named 'Mars' (known: none)."),
            (("--url", "https://example.org", "--secret", "hunter2"),
             "Give the secret as --secret @FILE or --secret @- (stdin): on the command line "
             "it would show in `ps` and shell history.")]:
        refused = workdeck.cli("notify", "add", "n", *args)
        assert (refused.code, refused.err) == (1, f"workdeck: {said}\n"), args
    assert workdeck.cli("notify", "list").out.strip() == "NAME  FORMAT  ON  URL  LAST"

"""People, roles and tokens over real HTTPS (the server's own certificate): every route
called as each role, grants scoped to environments, expired and revoked tokens, open
streams closed, failed logins slowed and audited; `workdeck login` pinning the
certificate, and refusing another one on the same address."""

from __future__ import annotations

import getpass
import re
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from conftest import both_stores, short_tmp, start_workdeck, stop_workdeck
from test_api_fuzz import free_port
from waiting import eventually

from console.client import Client, Target
from wire.roles import ROLES, SCOPED

pytestmark = both_stores

ROOT = Path(__file__).resolve().parent.parent
PEOPLE = {"vera": "viewer", "otto": "operator", "ada": "approver", "adam": "admin",
          "nemo": None}


class Server:
    def __init__(self, database: str | None = None) -> None:
        self.root = short_tmp("wd-people-")
        home = self.root / "home"
        home.mkdir()
        self.port = free_port()
        self.database = database
        self.data_dir, self.process = start_workdeck(
            self.root, home, ["--listen", f"127.0.0.1:{self.port}"], database=database)
        self.url = f"https://127.0.0.1:{self.port}"
        self.tokens: dict[str, str] = {}
        # The certificate the server made for itself, trusted as it is (names and all).
        self.tls = ssl.create_default_context(
            cafile=str(self.data_dir.root / "tls-cert.pem"))

    def local(self) -> Client:
        return Client(Target(self.data_dir))

    def http(self, person: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[person]}"} if person else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, verify=self.tls)

    def get(self, path: str, token: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers={"Authorization": f"Bearer {token}"},
                         verify=self.tls)

    def token(self, person: str, **options: object) -> tuple[int, str]:
        with self.local() as client:
            made = client.post("/api/tokens", {"person": person, **options})
        return made["id"], made["token"]

    def stop(self) -> None:
        slow = stop_workdeck(self.process, self.data_dir)
        assert not slow, slow


@pytest.fixture
def server(database):
    running = Server(database)
    with running.local() as client:
        for environment in ("Development", "Production"):
            client.post("/api/environments", {"name": environment})
        for person, role in PEOPLE.items():
            client.post("/api/people", {"name": person})
            if role:
                client.post(f"/api/people/{person}/grants", {"role": role})
        client.post("/api/runbooks", {"toml": APPROVAL})
    for person in PEOPLE:
        running.tokens[person] = running.token(person, label="laptop")[1]
    try:
        yield running
    finally:
        running.stop()


APPROVAL = """
name = "Approve"
[[steps]]
name = "Look"
manual = "check the graphs"
"""


def routes() -> list[tuple[str, str, str | None]]:
    """Every route of the application with the permission it declares."""
    import tempfile

    from fastapi.routing import APIRoute

    from backend.api.app import create_app
    from backend.api.deps import Need
    from backend.core import Backend
    from backend.store.db import Store
    from wire.datadir import DataDir

    data_dir = DataDir(Path(tempfile.mkdtemp()) / "data")
    data_dir.ensure()
    app = create_app(Backend(data_dir, listen="unix:x", store=Store(data_dir.database)))

    def every(found):  # type: ignore[no-untyped-def]
        for route in found:
            yield from every(route.original_router.routes) \
                if hasattr(route, "original_router") else [route]

    return [(method, route.path, next(d.call.permission for d in route.dependant.dependencies
                                      if isinstance(d.call, Need)))
            for route in every(app.routes) if isinstance(route, APIRoute)
            for method in sorted(route.methods)]


def call(http: httpx.Client, method: str, path: str) -> httpx.Response:
    """The route, aimed at nothing that exists and with an empty body: what it may do is
    told apart from what it may not by 403, with no change made."""
    path = path.replace("{name}", "no-such-thing").replace("{run_id}", "999999") \
        .replace("{token_id}", "999999")
    if path == "/api/events":
        with http.stream(method, path) as streamed:
            if streamed.status_code >= 400:
                streamed.read()  # a refusal is short; an answer would never end
            return streamed
    return http.request(method, path, json=None if method in ("GET", "DELETE") else {})


def test_every_route_answers_each_role_as_the_readme_table_says(server):
    declared = routes()
    assert len(declared) > 40
    for method, path, permission in declared:
        for person, role in PEOPLE.items():
            allowed = permission is None or (role is not None
                                              and permission in ROLES[role])
            if allowed and path == "/api/server/stop":
                continue  # it would do it
            with server.http(person) as http:
                answer = call(http, method, path)
            what = f"{method} {path} as {person} ({role})"
            if allowed:
                assert answer.status_code not in (401, 403), (what, answer.text)
            else:
                assert answer.status_code == 403, (what, answer.status_code)
                said = answer.json()["detail"]
                assert said.startswith(f"{person} ({role or 'no role'}) may not "), said


def test_grants_scoped_to_environments_are_judged_against_the_run(server):
    with server.local() as client:
        client.post("/api/people/otto/revoke", {"role": "operator"})
        client.post("/api/people/otto/grants", {"role": "operator",
                                                 "environments": ["Development"]})
        client.post("/api/people/ada/revoke", {"role": "approver"})
        client.post("/api/people/ada/grants", {"role": "approver",
                                                "environments": ["Production"]})
    with server.http("otto") as otto:
        refused = otto.post("/api/runs", json={"runbook": "Approve",
                                               "environment": "Production"})
        assert refused.status_code == 403
        assert refused.json()["detail"] == ("otto (operator on Development) may not launch "
                                            "runs on Production.")
        run = otto.post("/api/runs", json={"runbook": "Approve",
                                           "environment": "Development"}).json()
        assert run["actor"] == "otto (laptop, 127.0.0.1)"
        eventually(lambda: otto.get(f"/api/runs/{run['id']}").json()["waiting"],
                   what="the run waiting at its manual step")
        # An operator answers guided failures, not manual steps.
        refused = otto.post(f"/api/runs/{run['id']}/decide", json={"action": "approve"})
        assert refused.json()["detail"] == ("otto (operator on Development) may not approve "
                                            "manual steps on Development.")
    with server.http("ada") as ada:
        refused = ada.post(f"/api/runs/{run['id']}/decide", json={"action": "approve"})
        assert refused.json()["detail"] == ("ada (approver on Production) may not approve "
                                            "manual steps on Development.")
    with server.local() as client:
        client.post("/api/people/ada/grants", {"role": "approver",
                                                "environments": ["Development"]})
    with server.http("ada") as ada:
        decided = ada.post(f"/api/runs/{run['id']}/decide",
                           json={"action": "approve", "note": "graphs fine"})
        assert decided.status_code == 200, decided.text
        assert decided.json()["decisions"][-1]["actor"] == "ada (laptop, 127.0.0.1)"
    with server.local() as client:
        audit = client.get("/api/audit")
    assert any(e["action"] == "run.launch" and e["actor"] == "otto (laptop, 127.0.0.1)"
               for e in audit)
    assert any(e["action"] == "person.grant" and e["actor"] == f"{getpass.getuser()} (socket)"
               for e in audit)


def test_a_followed_log_says_why_it_ends_when_the_token_is_revoked(server):
    # A follower must tell "you may no longer see this" from a node gone away (which it
    # would take for a broken stream and go on from on another node).
    with server.local() as client:
        run = client.post("/api/runs", {"runbook": "Approve", "environment": "Development"})
    token_id, token = server.token("vera", label="phone")
    opened, said = threading.Event(), []

    def follow() -> None:
        with httpx.stream("GET", f"{server.url}/api/runs/{run['id']}/log",
                          params={"follow": "true"}, timeout=60, verify=server.tls,
                          headers={"Authorization": f"Bearer {token}"}) as stream:
            for line in stream.iter_lines():
                opened.set()
                said.append(line)

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    assert opened.wait(30), "the log stream never opened"
    with server.local() as client:
        client.delete(f"/api/tokens/{token_id}")
    reader.join(10)
    assert not reader.is_alive(), "a revoked token's log stream stayed open"
    assert "event: refused" in said, said
    assert (f'data: {{"message":"You may no longer see run {run["id"]}: your token was '
            'revoked or your grants changed."}') in said, said


def test_expired_and_revoked_tokens_are_refused_and_close_their_streams(server):
    _id, short = server.token("vera", expires_s=1)
    # Valid (200, no failure counted) until its second is up, then refused as expired.
    answer = eventually(lambda: (a := server.get("/api/workers", short)).status_code == 401
                        and a, what="the token expired")
    assert "expired" in answer.json()["detail"]

    token_id, token = server.token("vera", label="phone")
    streaming, ended = threading.Event(), threading.Event()

    def follow() -> None:
        with httpx.stream("GET", f"{server.url}/api/events", timeout=60, verify=server.tls,
                          headers={"Authorization": f"Bearer {token}"}) as stream:
            for _ in stream.iter_bytes():
                streaming.set()  # the snapshot came: the stream is open and authorised
        ended.set()

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    assert streaming.wait(30), "the stream never opened"
    assert not ended.is_set()
    with server.local() as client:
        client.delete(f"/api/tokens/{token_id}")
        revoked_at = time.monotonic()
    assert ended.wait(10), "a revoked token's stream stayed open"
    assert time.monotonic() - revoked_at < 3
    answer = server.get("/api/workers", token)
    assert answer.status_code == 401
    # Removing a person ends theirs too.
    streaming.clear()
    ended.clear()
    token = server.tokens["otto"]
    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    assert streaming.wait(30), "the stream never opened"
    with server.local() as client:
        client.delete("/api/people/otto")
    assert ended.wait(10), "a removed person's stream stayed open"


def test_failed_logins_are_slowed_and_audited(server):
    statuses = [server.get("/api/workers", f"wd_wrong{i}").status_code for i in range(12)]
    assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]
    # Only failures are slowed: a good token from the same address (an office behind one
    # NAT) still gets in.
    with server.http("vera") as vera:
        assert vera.get("/api/workers").status_code == 200
    with server.local() as client:
        failed = [e for e in client.get("/api/audit") if e["action"] == "auth.fail"]
    assert len(failed) == 10 and {e["target"] for e in failed} == {"127.0.0.1"}
    # The tenth says the address is refused for the rest of the minute. (Written in the
    # background: on PostgreSQL the ten may be stored in another order than they came.)
    assert [e for e in failed if "refused for the rest of it" in e["detail"]]


def test_tokens_are_a_persons_own_unless_admin(server):
    with server.http("vera") as vera:
        mine = vera.post("/api/tokens", json={"label": "second"})
        assert mine.status_code == 201 and mine.json()["person"] == "vera"
        assert len(mine.json()["token"]) >= 43  # 256 bits
        theirs = vera.post("/api/tokens", json={"person": "otto"})
        assert theirs.status_code == 403
        listed = vera.get("/api/tokens").json()
        assert {t["person"] for t in listed} == {"vera"}
        assert all("token" not in t for t in listed)
        otto_token = next(t["id"] for t in server.local().get("/api/tokens")
                          if t["person"] == "otto")
        assert vera.delete(f"/api/tokens/{otto_token}").status_code == 403
        assert vera.delete(f"/api/tokens/{mine.json()['id']}").status_code == 204
    with server.http("adam") as adam:
        assert len({t["person"] for t in adam.get("/api/tokens").json()}) == len(PEOPLE)


def test_the_readme_table_is_the_roles(server):
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| permission |"):]
    rows = []
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break  # the table's end
        rows.append(line)
    header = [cell.strip() for cell in table.splitlines()[0].strip("|").split("|")]
    roles = header[2:]
    assert roles == list(ROLES)
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        permission = cells[0].strip("`")
        for role, mark in zip(roles, cells[2:], strict=True):
            assert (mark == "✓") == (permission in ROLES[role]), (permission, role)
        assert (permission in SCOPED) == ("per environment" in cells[1]), permission
    assert {re.sub(r"`", "", r.strip("|").split("|")[0].strip()) for r in rows} == \
        set(next(iter(ROLES.values())) | ROLES["admin"])


def test_login_pins_the_certificate_and_refuses_another_on_the_same_address(server,
                                                                           tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path)}

    def workdeck(*args: str, token: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "console.cli", *args], input=token,
                              capture_output=True, text=True, env=env, timeout=60)

    with server.local() as client:
        shown = client.get("/api/server")["tls_fingerprint"]
    assert shown and shown.startswith("SHA256:")
    # Nobody to ask, and no fingerprint given: nothing is trusted blindly.
    refused = workdeck("login", server.url, "--name", "lab", token=server.tokens["vera"])
    assert refused.returncode == 1 and f"presented {shown}" in refused.stderr
    wrong = workdeck("login", server.url, "--name", "lab", "--fingerprint", "SHA256:00:11",
                     token=server.tokens["vera"])
    assert wrong.returncode == 1 and "nothing was saved" in wrong.stderr
    done = workdeck("login", server.url, "--name", "lab", "--fingerprint",
                    shown.lower().replace(":", "").replace("sha256", "SHA256:"),
                    token=server.tokens["vera"])
    assert done.returncode == 0, done.stderr
    assert "as vera: viewer" in done.stdout
    saved = tmp_path / "config" / "workdeck" / "profiles.json"
    assert saved.stat().st_mode & 0o777 == 0o600
    assert server.tokens["vera"] in saved.read_text()  # the token is kept there alone
    me = workdeck("--server", "lab", "whoami")
    assert me.returncode == 0 and me.stdout.startswith("vera (laptop): viewer"), me.stderr
    bad = workdeck("login", server.url, "--name", "other", "--fingerprint", shown,
                   token="wd_not-a-token")
    assert bad.returncode == 1 and "refused the token" in bad.stderr
    # Another certificate on the same address: refused, saying so.
    server.stop()
    for made in ("tls-cert.pem", "tls-key.pem"):
        (server.data_dir.root / made).unlink()
    home = server.root / "home"
    server.data_dir, server.process = start_workdeck(
        server.root, home, ["--listen", f"127.0.0.1:{server.port}"], database=server.database)
    changed = workdeck("--server", "lab", "whoami")
    assert changed.returncode != 0
    assert f"not {shown} pinned for 'lab': it may be a man-in-the-middle" in changed.stderr


def test_plain_http_is_refused_off_loopback(tmp_path):
    from wire.datadir import DataDir

    data_dir = DataDir(tmp_path / "data")
    done = subprocess.run([sys.executable, "-m", "console.cli", "--data-dir",
                           str(data_dir.root), "server", "--listen",
                           f"0.0.0.0:{free_port()}", "--plain-http"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == ("workdeck: Plain HTTP would send tokens in the clear to "
                                   "0.0.0.0: serve HTTPS there (leave out --plain-http), or "
                                   "listen on a loopback address.")


def test_grants_refused_with_a_sentence(server):
    account = getpass.getuser()
    said: list[str] = []
    with server.local() as client:
        for path, body in ((f"/api/people/{account}/grants", {"role": "viewer"}),
                           ("/api/people/otto/grants", {"role": "boss"}),
                           ("/api/people/otto/revoke", {"role": "operator",
                                                        "environments": ["Production"]}),
                           ("/api/people/otto/grants", {"role": "viewer",
                                                        "environments": ["Staging"]})):
            with pytest.raises(Exception) as refused:
                client.post(path, body)
            said.append(str(refused.value))
    assert said == [
        f"{account!r} is the server's own account: always admin, it cannot be changed.",
        "There is no role 'boss': the roles are viewer, operator, approver, admin.",
        "otto holds operator everywhere: revoke it without --env, then grant it where they "
        "keep it.",
        "No environment is named 'Staging'."]



def test_the_console_over_https_with_a_saved_profile(server, tmp_path, monkeypatch):
    """`workdeck --server lab` opens the console as the profile's person, on the pinned
    certificate, its push stream live."""
    import asyncio

    from console import profiles
    from console.app import WorkdeckApp

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("WORKDECK_TOKEN", raising=False)
    certificate = (server.data_dir.root / "tls-cert.pem").read_text()
    profiles.save(profiles.Profile("lab", server.url, server.tokens["vera"], certificate))

    async def look() -> list[str]:
        app = WorkdeckApp(Target(server.data_dir, "lab"))
        async with app.run_test(size=(120, 40)) as pilot:
            for _ in range(400):
                if app.fleet_loaded:
                    break
                await pilot.pause(0.05)
            assert app.fleet_loaded, "the console never got its first picture over HTTPS"
            with server.local() as client:
                client.post("/api/pools", {"name": "Pool Made Meanwhile"})
            for _ in range(200):
                if "Pool Made Meanwhile" in app.fleet.pools:
                    break
                await pilot.pause(0.05)
            return list(app.fleet.pools)

    assert "Pool Made Meanwhile" in asyncio.run(look())


def test_the_command_line_for_people_and_tokens(server):
    def workdeck(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "console.cli", "--data-dir",
                               str(server.data_dir.root), *args],
                              capture_output=True, text=True, timeout=60)

    added = workdeck("user", "add", "carol")
    assert added.returncode == 0 and added.stdout.startswith("Added carol.")
    granted = workdeck("user", "grant", "carol", "operator", "--env", "Development")
    assert granted.stdout.strip() == "carol: operator on Development."
    granted = workdeck("user", "grant", "carol", "approver")
    assert granted.stdout.strip() == "carol: approver, operator on Development."
    revoked = workdeck("user", "revoke", "carol", "operator", "--env", "Development")
    assert revoked.stdout.strip() == "carol: approver."
    made = workdeck("token", "create", "--user", "carol", "--label", "phone", "--expires",
                    "90d")
    token = made.stdout.strip()
    assert made.returncode == 0 and token.startswith("wd_") and "\n" not in token
    assert "it is shown only now" in made.stderr and token not in made.stderr
    shown = workdeck("user", "show", "carol")
    assert shown.stdout.splitlines()[0] == "carol: approver"
    assert "phone" in shown.stdout and token not in shown.stdout
    listed = workdeck("user", "list")
    assert f"{getpass.getuser()} (the server's account)  {getpass.getuser()}" in listed.stdout
    assert token not in workdeck("token", "list").stdout
    me = workdeck("whoami")
    assert me.stdout.startswith(f"{getpass.getuser()} (socket): admin")
    removed = workdeck("user", "remove", "carol")
    assert removed.returncode == 0
    assert server.get("/api/whoami", token).status_code == 401

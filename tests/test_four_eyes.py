"""Four eyes, over the command line as each person would use it (their token, against a
real server): a manual step that needs another person, an environment whose every launch
and manual step does, a refusal with its note, a restart while a start waits, and the
runbook field checked."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from conftest import QUIET_POLICY, short_tmp, start_workdeck, stop_workdeck
from test_api_fuzz import free_port
from waiting import eventually

from console.cli import cli
from console.client import Client, Target

TEAM = {"otto": "operator", "ada": "approver", "amy": "approver", "adam": "admin"}
RUNBOOKS = ['''
name = "Gate"
[[steps]]
name = "Look"
manual = "Check the graphs, then approve."
approval = "another person"
[[steps]]
name = "Say"
script = "echo gate passed"
''', '''
name = "Deploy"
[[steps]]
name = "Say"
script = "echo deployed"
[[steps]]
name = "Confirm"
manual = "Confirm the deploy looks right."
''']


class Team:
    """A server with a team on it; `as_(person, ...)` is the real command line run with
    that person's token."""

    def __init__(self) -> None:
        self.root = short_tmp("wd-eyes-")
        self.home = self.root / "home"
        self.home.mkdir()
        self.port = free_port()
        self.args = ["--listen", f"127.0.0.1:{self.port}", "--plain-http"]
        self.data_dir, self.process = start_workdeck(self.root, self.home, self.args)
        with Client(Target(self.data_dir)) as client:
            # The machine's own load must not turn the built-in worker to "warning" (a
            # worker with a warning takes no step): other test files load it. Checked again
            # under it, in case the first check came before it.
            client.put("/api/policy", QUIET_POLICY)
            client.post("/api/checks", {"workers": ["built-in-worker"]})
        self.url = f"http://127.0.0.1:{self.port}"
        self.tokens: dict[str, str] = {}

    def admin(self, *args: str) -> tuple[int, str]:
        """As the server's own account, over the socket."""
        result = CliRunner().invoke(cli, ["--data-dir", str(self.data_dir.root), *args])
        return result.exit_code, result.output

    def as_(self, person: str, *args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["--server", self.url, *args], env={
            "WORKDECK_TOKEN": self.tokens[person], "HOME": str(self.home)})
        assert "Traceback" not in result.output, result.output
        return result.exit_code, result.output

    def run(self, run_id: str) -> dict:
        with Client(Target(self.data_dir)) as client:
            return client.get(f"/api/runs/{run_id}")

    def until(self, run_id: str, predicate) -> dict:
        return eventually(lambda: predicate(run := self.run(run_id)) and run, timeout=30,
                          what=f"run {run_id}")

    def restart(self) -> None:
        self.stop()
        self.data_dir, self.process = start_workdeck(self.root, self.home, self.args)

    def stop(self) -> None:
        slow = stop_workdeck(self.process, self.data_dir)
        assert not slow, slow


@pytest.fixture
def team(tmp_path):
    running = Team()
    for env in ("Development",):
        assert running.admin("env", "add", env)[0] == 0
    code, said = running.admin("env", "add", "Production", "--four-eyes")
    assert code == 0 and "another person's approval" in said, said
    for person, role in TEAM.items():
        running.admin("user", "add", person)
        running.admin("user", "grant", person, role)
        code, said = running.admin("token", "create", "--user", person)
        running.tokens[person] = said.splitlines()[0].strip()
    for number, text in enumerate(RUNBOOKS):
        path = tmp_path / f"runbook{number}.toml"
        path.write_text(text)
        assert running.admin("runbook", "import", str(path))[0] == 0
    try:
        yield running
    finally:
        running.stop()


def launched(team: Team, person: str, runbook: str, env: str) -> str:
    code, said = team.as_(person, "run", runbook, "--env", env)
    assert code == 0, said
    return said.strip().splitlines()[-1]


def test_whoever_launched_cannot_approve_a_step_that_needs_another_person(team):
    run_id = launched(team, "adam", "Gate", "Development")
    run = team.until(run_id, lambda r: r["waiting"])
    assert run["person"] == "adam" and run["waiting"]["another_person"]
    assert "needs approval by another person" in run["waiting"]["prompt"]

    code, said = team.as_("adam", "runs", "decide", run_id, "approve")
    assert code != 0
    assert f"adam launched run {run_id}: another person must approve this step." in said
    assert team.run(run_id)["status"] == "waiting"  # nothing moved
    # The launcher may still abort their own run; anyone else allowed approves it.
    code, said = team.as_("amy", "runs", "decide", run_id, "approve", "--note", "graphs ok")
    assert code == 0, said
    run = team.until(run_id, lambda r: r["finished_at"])
    assert run["status"] == "succeeded"
    decision = run["decisions"][-1]
    assert decision["action"] == "approve" and decision["actor"].startswith("amy (")
    assert decision["note"] == "graphs ok" and decision["at"]
    shown = team.as_("otto", "runs", "show", run_id)[1]
    assert "launched by adam (" in shown and "amy (" in shown and "graphs ok" in shown
    audit = team.admin("audit")[1]
    assert "run.approve" in audit and "graphs ok" in audit


def test_a_four_eyes_environment_holds_every_launch_until_another_person_allows_it(team):
    run_id = launched(team, "adam", "Deploy", "Production")
    run = team.until(run_id, lambda r: r["status"] == "waiting")
    assert "needs approval by another person to start on Production" in run["reason"]
    assert run["waiting"]["position"] == 0 and run["waiting"]["another_person"]
    assert run["started_at"] is None
    assert all(step["status"] == "queued" for step in run["steps"])  # nothing ran
    listed = team.as_("otto", "runs", "show", run_id)[1]
    assert "needs approval by another person" in listed and "not by adam" in listed

    code, said = team.as_("adam", "runs", "decide", run_id, "approve")
    assert code != 0 and "another person must approve its start" in said
    code, said = team.as_("otto", "runs", "decide", run_id, "approve")
    assert code != 0 and "otto (operator) may not approve manual steps on Production" in said
    code, said = team.as_("ada", "runs", "decide", run_id, "approve", "--note", "change 42")
    assert code == 0, said
    # Its manual step needs another person too, there: not adam.
    run = team.until(run_id, lambda r: r["waiting"] and r["waiting"]["position"] == 2)
    assert run["steps"][0]["status"] == "succeeded" and run["started_at"]
    assert run["waiting"]["another_person"]
    code, said = team.as_("adam", "runs", "decide", run_id, "approve")
    assert code != 0 and "another person must approve this step" in said
    assert team.as_("amy", "runs", "decide", run_id, "approve")[0] == 0
    run = team.until(run_id, lambda r: r["finished_at"])
    assert run["status"] == "succeeded"
    starts = [d for d in run["decisions"] if d["position"] == 0]
    assert len(starts) == 1 and starts[0]["actor"].startswith("ada (")
    assert starts[0]["note"] == "change 42"
    shown = team.admin("runs", "show", run_id)[1]
    assert "start" in shown and "change 42" in shown


def test_a_refusal_ends_the_run_cancelled_with_the_note(team):
    run_id = launched(team, "otto", "Deploy", "Production")
    team.until(run_id, lambda r: r["status"] == "waiting")
    code, said = team.as_("ada", "runs", "decide", run_id, "abort", "--note",
                          "not during the freeze")
    assert code == 0, said
    run = team.until(run_id, lambda r: r["finished_at"])
    assert run["status"] == "cancelled"
    assert run["reason"].startswith("refused by ada (")
    assert run["reason"].endswith(": not during the freeze")
    assert all(step["status"] == "skipped" for step in run["steps"])
    assert "run.abort" in team.admin("audit")[1]


def test_a_start_waiting_for_approval_can_be_cancelled_and_survives_a_restart(team):
    cancelled = launched(team, "otto", "Deploy", "Production")
    team.until(cancelled, lambda r: r["status"] == "waiting")
    assert team.as_("otto", "runs", "cancel", cancelled)[0] == 0
    run = team.until(cancelled, lambda r: r["finished_at"])
    assert run["status"] == "cancelled" and run["reason"].startswith("cancelled by otto (")

    waiting = launched(team, "otto", "Deploy", "Production")
    team.until(waiting, lambda r: r["status"] == "waiting")
    team.restart()
    run = team.until(waiting, lambda r: r["waiting"])
    assert run["waiting"]["position"] == 0 and run["waiting"]["another_person"]
    code, said = team.as_("otto", "runs", "decide", waiting, "approve")
    assert code != 0 and "may not approve" in said  # otto is an operator
    assert team.as_("ada", "runs", "decide", waiting, "approve")[0] == 0
    run = team.until(waiting, lambda r: r["waiting"] and r["waiting"]["position"] == 2)
    assert run["steps"][0]["status"] == "succeeded"


def test_four_eyes_is_set_per_environment(team):
    said = team.admin("env", "list")[1]
    assert "Production  (four eyes)" in said and "Development\n" in said
    code, said = team.as_("otto", "env", "set", "Production", "--no-four-eyes")
    assert code != 0 and "otto (operator) may not change this" in said
    code, said = team.admin("env", "set", "Production", "--no-four-eyes")
    assert code == 0, said
    run_id = launched(team, "adam", "Deploy", "Production")
    run = team.until(run_id, lambda r: r["waiting"])
    assert run["waiting"]["position"] == 2 and not run["waiting"]["another_person"]
    assert team.as_("adam", "runs", "decide", run_id, "approve")[0] == 0  # anyone now
    assert team.admin("env", "set", "Nowhere", "--four-eyes")[0] != 0
    assert "environment.set" in team.admin("audit")[1]


@pytest.mark.parametrize(("field", "said"), [
    ('approval = "someone"', "'someone' is not \"anyone\" or \"another person\""),
    ('approval = 3', "3 is not \"anyone\" or \"another person\""),
])
def test_the_approval_field_is_checked(team, tmp_path, field, said):
    path = tmp_path / "bad.toml"
    path.write_text(f'name = "Bad"\n[[steps]]\nname = "Look"\nmanual = "look"\n{field}\n')
    code, printed = team.admin("runbook", "import", str(path))
    assert code != 0 and said in printed, printed
    path.write_text('name = "Bad"\n[[steps]]\nname = "Do"\nscript = "true"\n'
                    'approval = "another person"\n')
    code, printed = team.admin("runbook", "import", str(path))
    assert code != 0 and "only a manual step is approved" in printed, printed


def test_the_approval_field_survives_export(team):
    code, exported = team.admin("runbook", "export", "Gate")
    assert code == 0 and 'approval = "another person"' in exported

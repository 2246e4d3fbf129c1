"""The command line as a client: what it imports, how it formats, how it prints a log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_runs import import_runbook, launch, wait_run

from console import display
from wire.logcodec import Clock, as_json_lines, as_text, expand

SERVER_STACK = ("sqlalchemy", "sqlmodel", "fastapi", "uvicorn", "asyncssh", "starlette")

# Runs the command line in this process and, as it exits, says which of the server's
# packages it imported.
PROBE = """
import atexit, sys
def report():
    loaded = sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1].split(',')))
    sys.stderr.write('\\nIMPORTED ' + ','.join(loaded) + '\\n')
atexit.register(report)
stack = sys.argv[1]
sys.argv = ['workdeck'] + sys.argv[2:]
from console.cli import main
main()
"""


def test_the_console_and_its_editor_import_none_of_the_servers_stack():
    # The editor parses and writes runbook files with wire.runbook, not the backend's store.
    done = subprocess.run(
        [sys.executable, "-c", "import sys, console.app, console.screens.editor\n"
         "print(','.join(sorted({m.split('.')[0] for m in sys.modules})))"],
        capture_output=True, text=True, timeout=60, check=True)
    loaded = set(done.stdout.strip().split(","))
    assert "wire" in loaded and not loaded & {*SERVER_STACK, "backend"}


def run_probe(workdeck, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(SERVER_STACK),
         "--data-dir", str(workdeck.data_dir.root), *args],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "HOME": str(workdeck.home)})
    line = [ln for ln in done.stderr.splitlines() if ln.startswith("IMPORTED")][-1]
    return done, {m for m in line.removeprefix("IMPORTED ").split(",") if m}


def test_client_commands_import_none_of_the_servers_stack(workdeck, tmp_path):
    workdeck.cli("settings", "--builtin-worker", "on")
    workdeck.cli("env", "add", "Test")
    import_runbook(workdeck, tmp_path, """
name = "Hello"
[[steps]]
name = "Say"
pool = "Default Worker Pool"
script = "echo hello"
""")
    assert workdeck.cli("check").code == 0
    run = launch(workdeck, "Hello")
    wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    for args in (["--help"], ["worker", "list"], ["worker", "list", "--json"],
                 ["check", "--json"], ["pool", "list"], ["runs", "list"],
                 ["runs", "show", str(run["id"])], ["runs", "log", str(run["id"])],
                 ["runs", "log", str(run["id"]), "--json"], ["runbook", "list"],
                 ["server", "status"], ["policy"], ["audit"]):
        done, imported = run_probe(workdeck, *args)
        assert done.returncode == 0, (args, done.stderr)
        assert not imported, f"workdeck {' '.join(args)} imported {', '.join(imported)}"
    done, _imported = run_probe(workdeck, "runs", "log", str(run["id"]))
    assert "] hello" in done.stdout


def test_the_log_as_text_and_as_json_lines_says_what_expand_says():
    chunk = {"first_seq": 7, "last_seq": 10, "position": 2, "worker": "web-01",
             "stream": "stderr",
             "lines": "1700000000.250\tfirst\nsecond \u00e9\n1700000003.5\tthird \"q\"\n"}
    clock = Clock()
    stamp = datetime.fromtimestamp(1700000000).strftime("%H:%M:%S")
    later = datetime.fromtimestamp(1700000003).strftime("%H:%M:%S")
    assert as_text(chunk, clock).splitlines() == [
        f"{stamp} [2:web-01] ! first", f"{stamp} [2:web-01] ! second \u00e9",
        f"{later} [2:web-01] ! third \"q\"", f"{later} [2:web-01] ! "]
    decoded = [json.loads(line) for line in as_json_lines(chunk).splitlines()]
    # `step`: the name of `position` one release ago, still given (README, "Changed").
    assert all(line.pop("step") == line["position"] for line in decoded)
    assert decoded == expand(chunk)
    assert [line["seq"] for line in decoded] == [7, 8, 9, 10]
    own = {**chunk, "worker": "", "stream": "workdeck", "lines": "1700000000\tstarted"}
    assert as_text(own, clock) == f"{stamp} [2] ** started\n"


def text_line_by_line(chunk, clock, at=0.0):
    """The plain reading of a chunk, one line at a time: what as_text must print."""
    tail = f" [{chunk['position']}:{chunk['worker']}] " if chunk["worker"] else \
        f" [{chunk['position']}] "
    prefix, out = clock(at) + tail, []
    for part in chunk["lines"].split("\n"):
        stamp, tab, text = part.partition("\t")
        if tab:
            prefix = clock(float(stamp)) + tail
        out.append(prefix + (text if tab else part))
    return "\n".join(out) + "\n"


line_texts = st.text(st.characters(blacklist_characters="\t\n\r"), max_size=5)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.none() | st.floats(1.7e9, 1.8e9), line_texts), min_size=1,
                max_size=12), st.floats(0, 1.8e9))
def test_the_log_as_text_prefixes_every_line_as_read_one_by_one(lines, at):
    chunk = {"first_seq": 1, "last_seq": len(lines), "position": 3, "worker": "w",
             "stream": "stdout", "lines": "\n".join(
                 (f"{stamp:.3f}\t{text}" if stamp is not None else text)
                 for stamp, text in lines)}
    assert as_text(chunk, Clock(), at) == text_line_by_line(chunk, Clock(), at)


NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).isoformat()


@pytest.mark.parametrize(("seconds", "shown"), [
    (0, "0s ago"), (59.9, "59s ago"), (60, "1m ago"), (90, "1m ago"), (119, "1m ago"),
    (3599, "59m ago"), (3600, "1h ago"), (86399, "23h ago"), (86400 * 3, "3d ago"),
    (-5, "0s ago"),  # a clock a little ahead of ours
])
def test_ago_counts_whole_units_down(seconds, shown):
    assert display.ago(at(seconds), NOW) == shown
    assert display.ago(None) == "never"


@pytest.mark.parametrize(("seconds", "shown"), [
    (4.25, "4.2s"), (59.96, "60.0s"), (61, "1m 01s"), (3599.9, "59m 59s"), (3661, "1h 01m"),
])
def test_duration(seconds, shown):
    assert display.duration(at(seconds), NOW.isoformat()) == shown
    assert display.duration(None, None) == "-"


@pytest.mark.parametrize(("value", "shown"), [
    (None, "-"), (0.42, "0.4 ms"), (9.94, "9.9 ms"), (10, "10 ms"), (1234.5, "1234 ms"),
])
def test_latency(value, shown):
    assert display.latency(value) == shown


@pytest.mark.parametrize(("value", "shown"), [
    (None, "-"), (0, "0 bytes"), (1023, "1023 bytes"), (1536, "1.5 KB"),
    (5 * 2**20, "5.0 MB"), (3 * 2**40, "3072.0 GB"),
])
def test_size(value, shown):
    assert display.size(value) == shown


def test_worker_figures():
    load, cpus = [0.5, 3.0, 1.0], 2
    assert display.load(load, cpus) == "0.50/2" and display.overloaded(load, cpus)
    assert display.disk_free([2048, 300]) == "300 MB"
    assert display.least_free_disk(iter([2048, 300])) == 300
    assert display.megabytes(2048) == "2.0 GB"
    assert display.worker_label("web-01", False) == "web-01"
    assert display.worker_label("local", True) == "local (built-in)"
    assert display.load(None, None) == display.disk_free([]) == "-"
    assert not display.overloaded(None, 4) and not display.overloaded([9, 9, 9], None)


def test_statuses_have_one_symbol_each():
    assert display.status("healthy") == "● healthy"
    assert display.status("failed") == "✖ failed"
    assert display.status("something new") == "? something new"


def test_the_command_line_reads_answers_as_their_models(tmp_path):
    # Commands read answers through views annotated with the wire models: a type checker
    # holds every attribute they read to the models, so a renamed key cannot slip by. The
    # whole client side is checked, so that views can spread to the console's screens.
    checked = ["console", "wire"]
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--ignore-missing-imports",
         "--no-error-summary", "--cache-dir", str(tmp_path / "cache"), *checked],
        capture_output=True, text=True, timeout=240,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stdout + done.stderr
    # And the check would catch one: a misspelt attribute of a Worker.
    probe = tmp_path / "probe.py"
    probe.write_text("from wire.workers import Worker\n"
                     "def slots(w: Worker) -> int:\n    return w.leasez\n")
    caught = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--no-error-summary",
         "--cache-dir", str(tmp_path / "cache"), str(probe)],
        capture_output=True, text=True, timeout=240,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert caught.returncode == 1 and "leasez" in caught.stdout


def test_a_view_reads_objects_as_models_and_mappings_as_mappings():
    from console.typed import View, jsonable, view

    run = view({"id": 7, "variables": {"region": "eu"}, "steps": [{"name": "a"}],
                "waiting": None, "facts": {}})
    assert run.id == 7 and run.steps[0].name == "a" and run.waiting is None
    assert run.not_sent is None  # a key the server left out reads as the model's None
    assert dict(run.variables.items()) == {"region": "eu"} and "region" in run.variables
    assert run.variables["region"] == "eu" and run.variables.get("zone", "-") == "-"
    assert run.facts and len(run.facts) == 0  # a model is true even with nothing in it
    assert run == View(jsonable(run)) and run != view({"id": 8})


def test_json_is_compact_utf8_and_takes_what_orjson_refuses():
    from wire import jsontext

    assert jsontext.dumps({"a": [1, "é\n"], 2: None}) == '{"a":[1,"é\\n"],"2":null}'.encode()
    # A lone surrogate (a file name that is not UTF-8) and an integer past 64 bits: the
    # standard library's JSON, as before.
    assert jsontext.loads(jsontext.dumps({"path": "/srv/\udcff"})) == {"path": "/srv/\udcff"}
    assert jsontext.loads(jsontext.dumps(2**70)) == 2**70
    assert jsontext.loads(b'{"x": NaN}')["x"] != 0
    # Line ends other than \n, which line readers such as httpx's split at, are escaped:
    # an event of the push stream stays one line.
    text = "old\x85text\u2028that\u2029broke"
    encoded = jsontext.dumps({"reason": text})
    assert len(encoded.decode().splitlines()) == 1 and jsontext.loads(encoded)["reason"] == text

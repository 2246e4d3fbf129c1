"""Sensitive values reach a run without being written on the command line: asked for on a
terminal (no echo), read from a file or stdin; given on the command line, they warn."""

from __future__ import annotations

import os
import pty
import sys
import time

from click.testing import CliRunner
from conftest import both_stores
from test_runs import import_runbook, setup_fleet

from console.cli import cli

pytestmark = both_stores

SECRET_RUNBOOK = """
name = "Secret"
[variables]
who = "ops"
[variables.token]
sensitive = true
[[steps]]
name = "Use"
pool = "Web Pool"
script = 'echo "who=$who"; printf "token=%s\\\\n" "$token"; printf "%s\\\\n" "$token" | wc -l'
"""
TOKEN = "s3cr3t-Value"


def run_cli(workdeck, *args, stdin=None):
    result = CliRunner().invoke(cli, ["--data-dir", str(workdeck.data_dir.root), *args],
                                input=stdin)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_values_from_a_file_from_stdin_and_the_warning(workdeck, ssh_servers, client_key,
                                                       tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, SECRET_RUNBOOK)
    var_file = tmp_path / "vars.env"
    var_file.write_text(f"# kept out of ps\nwho=file\ntoken={TOKEN}\n")
    result = run_cli(workdeck, "run", "Secret", "--env", "Test", "--var-file", str(var_file),
                     "--follow")
    assert result.exit_code == 0, result.stderr
    assert "who=file" in result.stdout and "token=********" in result.stdout
    assert "warning" not in result.stderr

    result = run_cli(workdeck, "run", "Secret", "--env", "Test", "--var", "token=@-",
                     "--follow", stdin=TOKEN + "\n")
    assert result.exit_code == 0, result.stderr
    assert "token=********" in result.stdout and "who=ops" in result.stdout
    assert "] 1\n" in result.stdout  # the newline that ended stdin is not part of it

    key_file = tmp_path / "token.txt"
    key_file.write_text(TOKEN + "\n")
    result = run_cli(workdeck, "run", "Secret", "--env", "Test", "--var",
                     f"token=@{key_file}", "--var-file", "-", "--follow", stdin="who=stdin\n")
    assert result.exit_code == 0, result.stderr
    assert "who=stdin" in result.stdout and "token=********" in result.stdout

    result = run_cli(workdeck, "run", "Secret", "--env", "Test", "--var", f"token={TOKEN}")
    assert result.exit_code == 0
    assert "warning: token is sensitive" in result.stderr and "--var-file" in result.stderr

    cases = [
        (["--var-file", str(tmp_path / "missing.env")], "Cannot read variables from"),
        (["--var", "token=@-", "--var-file", "-"], "Only one value can come from stdin"),
    ]
    bad = tmp_path / "bad.env"
    bad.write_text("who=x\nnot a pair\n")
    cases.append((["--var-file", str(bad)], "line 2: not KEY=VALUE"))
    for extra, expected in cases:
        result = run_cli(workdeck, "run", "Secret", "--env", "Test", *extra, stdin="")
        assert result.exit_code == 1 and expected in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_a_sensitive_value_left_out_is_asked_for_on_a_terminal(workdeck, ssh_servers,
                                                               client_key, tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, SECRET_RUNBOOK)
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command line, on a terminal of its own
        os.environ["HOME"] = str(workdeck.home)
        os.execv(sys.executable, [sys.executable, "-m", "console.cli", "--data-dir",
                                  str(workdeck.data_dir.root), "run", "Secret", "--env",
                                  "Test", "--follow"])
    seen = b""

    def read_until(text: bytes, timeout: float = 30) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while text not in seen:
            assert time.monotonic() < deadline, seen
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                assert text in seen, seen
                return
            seen += chunk

    read_until(b"token (sensitive, not shown):")
    os.write(fd, TOKEN.encode() + b"\r")
    read_until(b"run ", timeout=30)
    read_until(b"succeeded", timeout=60)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    assert TOKEN.encode() not in seen  # no echo, and masked in the log
    assert b"token=********" in seen

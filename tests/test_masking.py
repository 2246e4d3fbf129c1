"""Secrets stay secret: masked on the raw stream, however the output arrives; sealed values
go when the run ends; values too short to mask are refused at launch."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import delete
from test_runs import import_runbook, launch, setup_fleet, wait_run

from backend.runs.loghub import LogHub
from backend.runs.logstore import RunLog, read
from backend.store.models import LogChunk
from wire.logcodec import expand
from wire.text import MAX_LINE

SECRET = "s3cr3t-Value"


@pytest.fixture
def store(run_store):
    return run_store


async def logged(store, secrets, pieces, stream="stdout"):
    log = RunLog(store, LogHub(), 1, secrets=secrets)
    log.start()
    for piece in pieces:
        await log.output(1, "w", stream, piece)
    log.end_stream(1, "w")
    await log.close()
    return [line["text"] for chunk in read(store, 1) for line in expand(chunk)]


def split_everywhere(data: bytes) -> list[list[bytes]]:
    return [[data[:cut], data[cut:]] for cut in range(1, len(data))]


@pytest.mark.parametrize("case", ["plain", "split", "tab", "multi-line", "at the cut",
                                  "byte by byte", "twice, overlapping"])
async def test_masking_on_the_raw_stream(store, case):
    secret, printed = SECRET, f"token={SECRET} end\n".encode()
    if case == "tab":
        secret = "with\ttab-Secret"
        printed = f"x {secret} y\n".encode()
    elif case == "multi-line":
        secret = "first-line\nsecond-line"
        printed = f"begin\n{secret}\nend\n".encode()
    elif case == "at the cut":
        printed = b"x" * (MAX_LINE - 5) + SECRET.encode() + b"\n"
    elif case == "twice, overlapping":
        secret = "abab-abab"
        printed = b"abab-abab-abab-abab\n"
    pieces = [[printed]]
    if case == "split":
        pieces = split_everywhere(printed)
    elif case == "byte by byte":
        pieces = [[printed[i:i + 1] for i in range(len(printed))]]
    for attempt, chunks in enumerate(pieces):
        with store.write() as session:
            session.execute(delete(LogChunk))
        texts = await logged(store, [secret], chunks)
        joined = "\n".join(texts)
        for part in secret.split("\n"):
            assert part not in joined, (case, attempt, texts)
        assert "*****" in joined, (case, texts)  # the mask (itself cut at the 16 KB cut)


async def test_a_secret_inside_another_is_masked_whole(store):
    texts = await logged(store, ["hunter2", "hunter2-admin"], [b"a hunter2-admin b\n"])
    assert texts == ["a ******** b"]


async def test_a_held_back_prefix_comes_out_intact(store):
    # The end of a piece that could start the secret waits for the next piece.
    texts = await logged(store, [SECRET], [b"s3cr3t-Va", b"lid\n", b"s3cr3t-Valu",
                                           b"e-not-quite\n", b"s3cr3"])
    assert texts == ["s3cr3t-Valid", "********-not-quite", "s3cr3"]


def test_short_secrets_are_refused_and_sealed_values_deleted(workdeck, ssh_servers,
                                                            client_key, tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, """
name = "Secret"
[variables.token]
sensitive = true
[[steps]]
name = "Use"
pool = "Web Pool"
script = 'echo "token=$token"'
""")
    refused = workdeck.cli("run", "Secret", "--env", "Test", "--var", "token=abc")
    assert refused.code == 1 and "shorter than 4 characters" in refused.err
    run = launch(workdeck, "Secret", variables={"token": SECRET})
    done = wait_run(workdeck, run["id"], lambda r: r["finished_at"])
    assert done["status"] == "succeeded"
    with sqlite3.connect(workdeck.data_dir.database) as conn:
        sealed = conn.execute("SELECT secrets FROM run WHERE id = ?", (run["id"],)).fetchone()
    assert sealed == ("",)


PEM = ("-----BEGIN TEST KEY-----\n"
       "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
       "KUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ\n-----END TEST KEY-----")


@pytest.mark.parametrize("how", ["indented", "line by line", "with CR", "whole"])
async def test_each_line_of_a_multi_line_secret_is_masked(store, how):
    lines = PEM.split("\n")
    printed = {
        "indented": "".join(f"  {line}\n" for line in lines),
        "line by line": "".join(f"line {i}: {line}\n" for i, line in enumerate(lines)),
        "with CR": "".join(f"{line}\r\n" for line in lines),
        "whole": PEM + "\n",
    }[how].encode()
    texts = await logged(store, [PEM, "ok\nno"], [printed[:50], printed[50:]])
    joined = "\n".join(texts)
    for line in lines:
        assert line not in joined, (how, texts)
    assert joined.count("********") >= 4 if how != "whole" else "********" in joined


async def test_short_lines_of_a_multi_line_secret_are_not_masked(store):
    # Lines under the masking length would mask every such word in the log.
    texts = await logged(store, ["ok\nlong-enough-line"], [b"ok then\nlong-enough-line\n"])
    assert texts == ["ok then", "********"]


def test_a_multi_line_secret_printed_through_sed_is_masked(workdeck, ssh_servers, client_key,
                                                          tmp_path):
    setup_fleet(workdeck, ssh_servers, client_key, count=1)
    import_runbook(workdeck, tmp_path, """
name = "Key"
[variables.key]
sensitive = true
[[steps]]
name = "Show"
pool = "Web Pool"
script = '''printf '%s\\n' "$key" | sed 's/^/  /' '''
""")
    result = workdeck.cli("run", "Key", "--env", "Test", "--var", f"key={PEM}", "--follow")
    assert result.code == 0, result.err
    for line in PEM.split("\n"):
        assert line not in result.out, result.out
    assert result.out.count("  ********") == 4

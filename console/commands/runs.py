"""`workdeck env`, `runbook`, `run` and `runs`: define runbooks, launch them, follow them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from console import display, output
from console.commands.base import Context, fail, pass_ctx
from console.errors import ApiError, ServerUnavailable
from console.typed import view
from wire.logcodec import Clock, as_json_lines, as_text
from wire.paths import segment

if TYPE_CHECKING:
    from wire.runbook import RunbookDef, RunbookSummary
    from wire.runs import Environment, Run, RunSummary

EXIT_BY_STATUS = {"succeeded": 0, "failed": 1, "cancelled": 3, "interrupted": 3}


@click.group()
def env() -> None:
    """Environments that runs target (Development, Test, Production...)."""


FOUR_EYES = "every launch and manual step needs another person's approval"


@env.command("add")
@click.argument("name")
@click.option("--four-eyes", is_flag=True, help=f"There, {FOUR_EYES}.")
@pass_ctx
def env_add(ctx: Context, name: str, four_eyes: bool) -> None:
    """Add an environment."""
    with ctx.client() as client:
        client.post("/api/environments", {"name": name, "four_eyes": four_eyes})
    output.say(f"Added environment {name}" + (f": {FOUR_EYES}." if four_eyes else "."))


@env.command("set")
@click.argument("name")
@click.option("--four-eyes/--no-four-eyes", default=None, help=f"Whether {FOUR_EYES} there.")
@pass_ctx
def env_set(ctx: Context, name: str, four_eyes: bool | None) -> None:
    """Change an environment: four eyes on or off (runs already waiting keep the question
    they were asked)."""
    if four_eyes is None:
        fail("Give --four-eyes or --no-four-eyes.")
    with ctx.client() as client:
        changed: Environment = view(client.patch(f"/api/environments/{segment(name)}",
                                                 {"four_eyes": four_eyes}))
    output.say(f"{changed.name}: " + (FOUR_EYES if changed.four_eyes
                                      else "anyone allowed may approve") + ".")


@env.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def env_list(ctx: Context, as_json: bool) -> None:
    """List the environments."""
    with ctx.client() as client:
        envs: list[Environment] = view(client.get("/api/environments"))
    if as_json:
        output.print_json(envs)
    else:
        for env_ in envs:
            output.say(env_.name + ("  (four eyes)" if env_.four_eyes else ""))


@click.group()
def runbook() -> None:
    """Import, export and list runbooks."""


@runbook.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@pass_ctx
def runbook_import(ctx: Context, files: tuple[str, ...]) -> None:
    """Import runbook TOML files (a runbook of the same name is replaced).

    Every file is checked before any is imported: all of them, or none."""
    uploads = []
    for file in files:
        try:
            # utf-8-sig: a byte order mark, as some editors write, is not part of the file.
            uploads.append({"toml": Path(file).read_text(encoding="utf-8-sig"),
                            "source": file})
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"Cannot read {file}: {getattr(exc, 'strerror', None) or exc}.")

    with ctx.client() as client:
        saved: list[RunbookDef] = view(client.post("/api/runbooks/import", {"files": uploads}))
    for book, upload in zip(saved, uploads, strict=True):
        output.say(f"Imported runbook {book.name!r} ({len(book.steps)} steps) "
                   f"from {upload['source']}.")


@runbook.command("export")
@click.argument("name")
@pass_ctx
def runbook_export(ctx: Context, name: str) -> None:
    """Print a runbook as TOML (it imports back to the same runbook)."""
    with ctx.client() as client:
        response = client.request_raw("GET", f"/api/runbooks/{segment(name)}/export")
    click.echo(response, nl=False)  # TOML with every invisible character escaped


@runbook.command("remove")
@click.argument("name")
@pass_ctx
def runbook_remove(ctx: Context, name: str) -> None:
    """Remove a runbook (past runs keep their own copy of it)."""
    with ctx.client() as client:
        client.delete(f"/api/runbooks/{segment(name)}")
    output.say(f"Removed runbook {name}.")


@runbook.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def runbook_list(ctx: Context, as_json: bool) -> None:
    """List the runbooks."""

    with ctx.client() as client:
        books: list[RunbookSummary] = view(client.get("/api/runbooks"))
    if as_json:
        output.print_json(books)
    else:
        output.table(["NAME", "STEPS", "VARIABLES", "DESCRIPTION"],
                     [[b.name, b.steps, ", ".join(b.variables), b.description]
                      for b in books])


def read_value(source: str, what: str) -> str:
    """The text of `@-` (stdin) or `@PATH`, without the one newline that ends a file."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"Cannot read {what} from {source}: {getattr(exc, 'strerror', None) or exc}.")
    return text.removesuffix("\n").removesuffix("\r")


def read_vars(pairs: tuple[str, ...], var_files: tuple[str, ...]
              ) -> tuple[dict[str, str], set[str]]:
    """Values from --var-file files (read first) and --var pairs; and the names whose
    value was written on the command line itself (seen in `ps` and shell history)."""
    values: dict[str, str] = {}
    for var_file in var_files:
        text = read_value(var_file, "variables")
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                fail(f"{var_file}, line {number}: not KEY=VALUE.")
            values[key.strip()] = value
    inline: set[str] = set()
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--var {pair!r} is not KEY=VALUE.")
        if value.startswith("@@"):
            value = value[1:]  # a value that itself starts with @
        elif value.startswith("@") and len(value) > 1:
            value = read_value(value[1:], f"the value of {key}")
        else:
            inline.add(key)
        values[key] = value
    if sum(p.partition("=")[2] == "@-" for p in pairs) + \
            sum(f == "-" for f in var_files) > 1:
        fail("Only one value can come from stdin (@- or --var-file -).")
    return values, inline


def ask_secrets(client: Any, runbook_name: str, values: dict[str, str]) -> None:
    """On a terminal, ask for each sensitive variable that has no value, without echo."""
    if not sys.stdin.isatty():
        return

    book: RunbookDef = view(client.get(f"/api/runbooks/{segment(runbook_name)}"))
    for variable in book.variables:
        if variable.sensitive and variable.name not in values:
            values[variable.name] = click.prompt(
                f"{variable.name} (sensitive, not shown)", hide_input=True, err=True)


@click.command()
@click.argument("runbook_name", metavar="RUNBOOK")
@click.option("--env", "environment", help="The environment to run in.")
@click.option("--var", "pairs", multiple=True, metavar="KEY=VALUE",
              help="A variable's value; KEY=@FILE reads it from a file, KEY=@- from stdin. "
              "Sensitive variables left out are asked for on a terminal.")
@click.option("--var-file", "var_files", multiple=True, metavar="FILE",
              help="KEY=VALUE lines (- for stdin); keeps values off the command line.")
@click.option("--follow", is_flag=True, help="Stream the log; exit 0 succeeded, 1 failed, "
              "3 cancelled or interrupted.")
@click.option("--guided", is_flag=True, help="On a failed step, wait for retry, skip or abort "
              "(`workdeck runs decide`).")
@click.option("--step-through", is_flag=True, help="Wait before each step for continue, skip "
              "or abort.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def run(ctx: Context, runbook_name: str, environment: str | None, pairs: tuple[str, ...],
        var_files: tuple[str, ...], follow: bool, guided: bool, step_through: bool,
        as_json: bool) -> None:
    """Launch a runbook; print the run's id (or follow its log)."""

    values, inline = read_vars(pairs, var_files)
    with ctx.client() as client:
        ask_secrets(client, runbook_name, values)
        launched: Run = view(client.post("/api/runs", {
            "runbook": runbook_name, "environment": environment, "variables": values,
            "guided": guided, "step_through": step_through}))
    exposed = sorted(inline & set(launched.sensitive))
    if exposed:
        output.say(f"warning: {', '.join(exposed)} {'is' if len(exposed) == 1 else 'are'} "
                   "sensitive, and a value on the command line shows in `ps` and shell "
                   "history: use --var NAME=@FILE, --var NAME=@-, --var-file, or leave it "
                   "out to be asked.", err=True)
    _answer_launch(ctx, launched, follow, as_json, said=str(launched.id),
                   heading=f"run {launched.id}: {launched.runbook} on {launched.environment}")


def _answer_launch(ctx: Context, launched: Run, follow: bool, as_json: bool, *, said: str,
                   heading: str) -> None:
    """What a launch (or a rerun) answers: the run, as `said` or JSON; with --follow,
    `heading` on stderr, then its log to the end, exiting as the run ended."""
    if not follow:
        if as_json:
            output.print_json(launched)
        else:
            output.say(said)
        return
    output.say(heading, err=True)
    sys.exit(_follow(ctx, launched.id, as_json))


def _follow(ctx: Context, run_id: int, as_json: bool, follow: bool = True) -> int:
    """Print the run's log as it happens; return the exit status for how it ended.

    Whole chunks are formatted at once and written to stdout's buffer in one call each:
    a million-line log is a few hundred writes, not a million echoes."""
    from console.client import Client

    final: dict[str, Any] = {}
    out = sys.stdout.buffer
    clock = Clock()
    seen = 0  # the last line printed: a stream that breaks off goes on after it
    nodes_left = len(ctx.target.addresses) - 1
    client = ctx.client()
    try:
        while True:
            try:
                ended = False
                for event, data in client.stream_events(
                        f"/api/runs/{run_id}/log",
                        {"follow": "true" if follow else "false", "after": str(seen)}):
                    if event == "chunks":
                        text = "".join(as_json_lines(chunk) if as_json
                                       else as_text(chunk, clock) for chunk in data)
                        out.write(text.encode("utf-8", "replace"))
                        seen = data[-1]["last_seq"]
                        if follow:
                            out.flush()  # someone is watching: lines as they come
                    elif event == "waiting" and data:
                        out.flush()
                        _say_waiting(ctx, data)
                    elif event == "end":
                        final, ended = data, True
                    elif event == "refused":
                        out.flush()
                        fail(data["message"])
                if not ended:
                    # The stream stopped without saying how the run ended: the node went
                    # away between two events. Another node has the rest.
                    raise ServerUnavailable(f"No Workdeck server answers at "
                                            f"{ctx.target.describe()} (the stream ended "
                                            "early).")
                out.flush()
                break
            except ApiError as exc:
                if exc.status_code:  # the server refused it (no such run): its own words
                    raise
                if nodes_left > 0 and ctx.target.fail_over():
                    # Another node of those sharing the database has the same log.
                    nodes_left -= 1
                    out.flush()
                    output.say(f"(the log stream broke off; going on from line {seen + 1} "
                               f"at {ctx.target.server_url})", err=True)
                    client.close()
                    client = Client(ctx.target)
                    continue
                fail(f"The log stream of run {run_id} broke off: {exc}", 4)
            except BrokenPipeError:
                # `runs log ID | head`: the reader has what it wanted.
                _quiet_stdout()
                return 0
    finally:
        client.close()
    status = final.get("status", "")
    if final.get("following", True):
        output.say(f"run {run_id} {status}" + (f": {final['reason']}" if final.get("reason")
                                                  else ""), err=True)
    return EXIT_BY_STATUS.get(status, 0 if not follow else 3)


def _say_waiting(ctx: Context, waiting: dict[str, Any]) -> None:
    """The run waits for someone: say for what, and the commands that answer it."""
    run_id = waiting["run_id"]
    lines = [f"run {run_id} is waiting: {waiting['prompt']}"]
    lines += [f"  {ctx.command} runs decide {run_id} {action}" for action in waiting["actions"]]
    lines.append("  (add --note TEXT to say why; the decision is kept with the run)")
    output.say("\n".join(lines), err=True)


def _quiet_stdout() -> None:
    """Stdout's reader is gone: point it at /dev/null so the exit flush says nothing."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


@click.group()
def runs() -> None:
    """List, show, follow, cancel and decide runs."""


@runs.command("list")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--status", help="Only runs with this status.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def runs_list(ctx: Context, limit: int, status: str | None, as_json: bool) -> None:
    """Recent runs, newest first."""

    with ctx.client() as client:
        items: list[RunSummary] = view(client.get("/api/runs", params={"limit": limit, **(
            {"status": status} if status else {})}))
    if as_json:
        output.print_json(items)
        return
    output.table(["ID", "RUNBOOK", "ENV", "STATUS", "STARTED", "BY", "REASON"],
                 [[r.id, r.runbook, r.environment, r.status,
                   display.ago(r.started_at or r.created_at), r.actor, r.reason]
                  for r in items])


@runs.command("show")
@click.argument("run_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def runs_show(ctx: Context, run_id: int, as_json: bool) -> None:
    """One run: its steps, workers and state."""

    with ctx.client() as client:
        item: Run = view(client.get(f"/api/runs/{run_id}"))
    if as_json:
        output.print_json(item)
        return
    output.say(f"run {item.id}: {item.runbook} on {item.environment}, "
               f"{item.status}" + (f" ({item.reason})" if item.reason else "")
               + (f"; launched by {item.actor}" if item.actor else "")
               + (f"\n  why: {item.cause}" if item.cause else "")
               + (f"\n  reruns: {', '.join(f'run {r}' for r in item.reruns)}"
                  if item.reruns else ""))
    output.table(["#", "STEP", "WORKER", "STATUS", "ATTEMPT", "REASON"],
                 [[s.position, s.name, s.worker, s.status, s.attempt,
                   s.reason or s.worker_reason]
                  for s in item.steps])
    if item.decisions:
        output.say("\ndecisions:")
        output.table(["AT", "BY", "DECIDED", "STEP", "NOTE"],
                     [[display.started(d.at), d.actor, d.action,
                       "start" if d.position == 0 else d.position or "", d.note]
                      for d in item.decisions])
    if item.waiting:
        actions = ", ".join(item.waiting.actions)
        output.say(f"\nwaiting: {item.waiting.prompt}\n  {ctx.command} runs decide "
                   f"{item.id} ACTION [--note TEXT]   (ACTION: {actions})"
                   + (f"\n  (not by {item.person}, who launched it)"
                      if item.waiting.another_person and item.person else ""))


@runs.command("log")
@click.argument("run_id", type=int)
@click.option("--follow", is_flag=True, help="Keep streaming until the run ends.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def runs_log(ctx: Context, run_id: int, follow: bool, as_json: bool) -> None:
    """Print a run's log (every line is kept)."""
    code = _follow(ctx, run_id, as_json, follow=follow)
    if follow:
        sys.exit(code)


@runs.command("rerun")
@click.argument("run_id", type=int)
@click.option("--from-step", type=click.IntRange(1, 10_000), metavar="N",
              help="Start from step N: the steps before it are not run again.")
@click.option("--from-failed", is_flag=True, help="Start from the run's first failed step.")
@click.option("--var", "pairs", multiple=True, metavar="KEY=VALUE",
              help="A sensitive variable's value (KEY=@FILE, KEY=@- read it): they are "
              "never kept for a rerun, and asked for on a terminal.")
@click.option("--var-file", "var_files", multiple=True, metavar="FILE",
              help="KEY=VALUE lines (- for stdin).")
@click.option("--follow", is_flag=True, help="Stream the new run's log; exit as `run "
              "--follow` does.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def runs_rerun(ctx: Context, run_id: int, from_step: int | None, from_failed: bool,
               pairs: tuple[str, ...], var_files: tuple[str, ...], follow: bool,
               as_json: bool) -> None:
    """Run a finished run again: the runbook as it had it, in its environment, with its
    values, from a step (or its first failed step) on."""
    if from_step is not None and from_failed:
        fail("Give --from-step N or --from-failed, not both.")
    values, _inline = read_vars(pairs, var_files)
    with ctx.client() as client:
        first: Run = view(client.get(f"/api/runs/{run_id}"))
        if sys.stdin.isatty():
            for name in first.sensitive:
                if name not in values:
                    values[name] = click.prompt(f"{name} (sensitive, not kept: given again)",
                                                hide_input=True, err=True)
        again: Run = view(client.post(f"/api/runs/{run_id}/rerun", {
            "from_step": from_step, "from_failed": from_failed, "variables": values}))
    before = again.from_step - 1
    said = f"run {again.id}: {again.cause}" + (
        "; step 1 is not run again" if before == 1 else
        f"; steps 1 to {before} are not run again" if before > 1 else "")
    _answer_launch(ctx, again, follow, as_json, said=said, heading=said)


@runs.command("cancel")
@click.argument("run_id", type=int)
@pass_ctx
def runs_cancel(ctx: Context, run_id: int) -> None:
    """Cancel a run: its step's processes on the worker are killed."""

    with ctx.client() as client:
        item: Run = view(client.post(f"/api/runs/{run_id}/cancel"))
    if item.finished_at:
        output.say(f"run {run_id} {item.status}")
    else:
        output.say(f"run {run_id}: its step was stopped; its cleanup steps run now "
                   f"(`workdeck runs cancel {run_id}` again stops them too)")


@runs.command("decide")
@click.argument("run_id", type=int)
@click.argument("action", type=click.Choice(["continue", "skip", "abort", "retry",
                                             "approve"]))
@click.option("--note", default="", help="Why (kept with the decision).")
@pass_ctx
def runs_decide(ctx: Context, run_id: int, action: str, note: str) -> None:
    """Answer a waiting run: continue/skip/abort, retry/skip/abort, approve/abort."""

    with ctx.client() as client:
        item: Run = view(client.post(f"/api/runs/{run_id}/decide",
                              {"action": action, "note": note}))
    output.say(f"run {run_id}: {action} recorded; now {_where_it_is(item)}")


def _where_it_is(run: Run) -> str:
    """What a run is doing, in a few words: for the answer to a decision."""
    if run.finished_at:
        return run.status + (f" ({run.reason})" if run.reason else "")
    if run.waiting:
        return f"waiting: {run.waiting.prompt}"
    busy = [s for s in run.steps if s.status in ("running", "queued") and
            (s.status == "running" or s.reason)]
    if busy:
        step = busy[0]
        workers = ", ".join(s.worker for s in busy if s.worker)
        return (f"{step.status}: step {step.position} ({step.name})" +
                (f" on {workers}" if workers else ""))
    return run.status

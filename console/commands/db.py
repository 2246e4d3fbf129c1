"""`workdeck db copy`: move the data directory's SQLite store into PostgreSQL."""

from __future__ import annotations

import sys

import click

from console import output
from console.commands.base import Context, fail, pass_ctx


@click.group()
def db() -> None:
    """The store itself: copy it into PostgreSQL."""


@db.command("copy")
@click.option("--to", "to", required=True, metavar="postgresql://USER@HOST/DB",
              help="The empty PostgreSQL database to copy into.")
@pass_ctx
def db_copy(ctx: Context, to: str) -> None:
    """Copy every row of the data directory's store into an empty PostgreSQL database.

    The server must be stopped (nothing may change while it is copied); start it again
    with `workdeck server --database URL`. The data directory stays in use: it holds the
    key that encrypts secrets.
    """
    from backend.store import copy
    from backend.store.db import Store, StoreError, is_url, masked
    from wire.serverlock import AlreadyRunning, ServerLock

    data_dir = ctx.data_dir
    if not is_url(to):
        fail(f"--to takes a database URL, like postgresql://USER@HOST/DB, not {to!r}.")
    if not data_dir.database.exists():
        fail(f"There is no store in {data_dir.root} to copy.")
    lock = ServerLock(data_dir)
    try:
        lock.acquire()  # no server may start on it while it is copied
    except AlreadyRunning as exc:
        fail(f"{exc} Nothing may change in the store while it is copied.")
    try:
        copy.refuse_unless_empty(to)
        source, target = Store(data_dir.database), Store(to)
        try:
            total = sum(copy.counts_of(source).values())
            with click.progressbar(length=total, label=f"Copying {total} rows",
                                   file=sys.stderr) as bar:
                copied = copy.copy(source, target, bar.update)
        finally:
            source.close()
            target.close()
    except StoreError as exc:
        fail(str(exc))
    finally:
        lock.release()
    output.say(f"Copied {sum(copied.values())} rows of {len(copied)} tables into "
               f"{masked(to)}; each table's rows counted on both sides. Start the server on "
               f"it with `{ctx.command} server --database URL` (or WORKDECK_DATABASE).")

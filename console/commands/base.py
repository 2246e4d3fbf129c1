"""What every command shares: where the server is, and how a refusal is reported."""

from __future__ import annotations

import sys
from urllib.parse import quote

import click

from backend.config import DataDir
from console.client import Client, Target, ensure_server


class Context:
    def __init__(self, data_dir: str | None, server: str | None) -> None:
        self.target = Target(DataDir.resolve(data_dir), server)

    def client(self) -> Client:
        ensure_server(self.target)
        return Client(self.target)


pass_ctx = click.make_pass_decorator(Context)


def fail(message: str, code: int = 1) -> None:
    click.echo(f"workdeck: {message}", err=True)
    sys.exit(code)


def quote_name(name: str) -> str:
    """A worker or pool name as one URL path segment."""
    return quote(name, safe="")

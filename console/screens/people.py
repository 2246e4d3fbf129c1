"""The People view: who may use Workdeck, their account on the server's host, their
roles and their tokens. An admin grants (`g`), revokes (`v`) and removes (`d`) here;
everyone else sees the list (and their own tokens)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Static

from console.client import ApiError
from console.display import ago, grants, started
from console.screens.base import FleetScreen
from console.state import matches, plain, safe
from console.typed import view
from console.widgets.live_table import ColumnSpec, LiveTable
from wire.paths import segment

if TYPE_CHECKING:
    from wire.people import Person, Token

PEOPLE_COLUMNS: list[ColumnSpec] = [
    ("name", "Name", 20, 0, 14), ("account", "OS account", 26, 2, 14),
    ("tokens", "Tokens", 6, 1), ("added", "Added", 9, 3), ("roles", "Roles", None, 0, 24)]
TOKEN_COLUMNS: list[ColumnSpec] = [
    ("id", "Token", 6), ("label", "Label", 20, 0, 12), ("created", "Created", 9, 2),
    ("expires", "Expires", 20), ("used", "Last used", None, 1)]
ROLE_HELP = ("ROLE [on ENVIRONMENT, ...]: viewer, operator, approver or admin; no "
             "environment: everywhere")


def parse_grant(text: str) -> tuple[str, list[str]]:
    """"operator on Development, Test" → ("operator", ["Development", "Test"])."""
    role, _, rest = text.strip().partition(" ")
    rest = rest.strip()
    if rest.startswith("on "):
        rest = rest[3:]
    return role.lower(), [env.strip() for env in rest.split(",") if env.strip()]


class PeopleScreen(FleetScreen):
    VIEW_NAME = "People"

    BINDINGS = [
        Binding("g", "grant", "Grant", id="grant"),
        Binding("v", "revoke", "Revoke", id="revoke"),
        Binding("d", "remove_person", "Remove", id="remove_person"),
        Binding("tab", "app.focus_next", "Next panel", id="switch_panel"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.people: dict[str, Person] = {}
        self.tokens: list[Token] = []
        self._read_version = -1

    def compose(self) -> ComposeResult:
        yield from self.compose_top()
        with Vertical(id="people-body"):
            table = LiveTable(id="people-table", fill="roles",
                              sort_key=lambda key, _row: (key not in self._builtin(), key))
            table.set_columns(PEOPLE_COLUMNS)
            yield table
            yield Static(id="tokens-title", classes="section-title")
            tokens = LiveTable(id="tokens-table", fill="used",
                               sort_key=lambda key, _row: int(key))
            tokens.set_columns(TOKEN_COLUMNS)
            yield tokens
        yield from self.compose_bottom()

    @property
    def table(self) -> LiveTable:
        return self.query_one("#people-table", LiveTable)

    def focus_main(self) -> None:
        self.table.focus()

    def on_mount(self) -> None:
        super().on_mount()
        self.table.focus()

    def _builtin(self) -> set[str]:
        return {name for name, person in self.people.items() if person.builtin}

    # -------------------------------------------------------- data

    def fleet_changed(self, changed: set[str] | None) -> None:
        super().fleet_changed(changed)
        version = self.wapp.fleet.people_version
        if version != self._read_version:
            self._read_version = version
            self.read_people()
        self._show()

    @work(exclusive=True, group="people", exit_on_error=False)
    async def read_people(self) -> None:
        try:
            people: list[Person] = view(await self.wapp.api.get("/api/people"))
            tokens: list[Token] = view(await self.wapp.api.get("/api/tokens"))
        except ApiError as exc:
            self.notify(plain(exc, 300), severity="error", markup=False)
            return
        self.people = {person.name: person for person in people}
        self.tokens = tokens
        self._show()

    def _show(self) -> None:
        text = self.filter_text
        self.table.sync({name: [
            safe(name, 64),
            safe(person.os_user or "-", 40) + (Text(" (the server's)", style="bright_black")
                                               if person.builtin else Text()),
            Text(str(person.tokens)),
            Text(ago(person.created_at) if person.created_at else "-", style="bright_black"),
            safe(grants(person), 300)]
            for name, person in self.people.items()
            if matches(text, name, person.os_user or "", grants(person))})
        self._show_tokens()

    def on_live_table_row_highlighted(self, _event: Any) -> None:
        self._show_tokens()
        self.refresh_bindings()

    def _show_tokens(self) -> None:
        name = self.table.selected_key
        mine = [t for t in self.tokens if t.person == name]
        title = self.query_one("#tokens-title", Static)
        title.update(Text(f"Tokens of {plain(name, 64)}: {len(mine)}" if name else "Tokens",
                          style="bold"))
        self.query_one("#tokens-table", LiveTable).sync({str(t.id): [
            Text(str(t.id)), safe(t.label or "-", 100),
            Text(ago(t.created_at), style="bright_black"),
            Text(started(t.expires_at) if t.expires_at else "never"),
            Text(ago(t.last_used_at) if t.last_used_at else "never",
                 style="bright_black")] for t in mine})

    # -------------------------------------------------------- verbs

    def selected(self) -> Person | None:
        key = self.table.selected_key
        return self.people.get(key) if key else None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("grant", "revoke", "remove_person"):
            person = self.selected()
            if not self.wapp.fleet.may("admin"):
                return False
            return None if person is None or person.builtin else True
        return super().check_action(action, parameters)

    def action_grant(self) -> None:
        self._change_grant("grants", "Grant", "granted")

    def action_revoke(self) -> None:
        self._change_grant("revoke", "Revoke", "revoked")

    def _change_grant(self, how: str, verb: str, done: str) -> None:
        from console.screens.modals import NoteDialog

        person = self.selected()
        if person is None or person.builtin:
            return

        def asked(answer: str | None) -> None:
            if not answer:
                return
            role, environments = parse_grant(answer)
            where = f" on {', '.join(environments)}" if environments else " everywhere"
            self.wapp.call_api(f"{verb} {role}", "POST",
                               f"/api/people/{segment(person.name)}/{how}",
                               {"role": role, "environments": environments},
                               done=plain(f"{person.name}: {role}{where} {done}.", 300))

        self.app.push_screen(NoteDialog(plain(f"{verb} a role: {person.name} "
                                              f"({grants(person)})", 300), ROLE_HELP),
                             asked)

    def action_remove_person(self) -> None:
        from console.screens.modals import ConfirmDialog

        person = self.selected()
        if person is None or person.builtin:
            return

        def decided(yes: bool | None) -> None:
            if yes:
                self.wapp.call_api(f"Remove {person.name}", "DELETE",
                                   f"/api/people/{segment(person.name)}",
                                   done=plain(f"Removed {person.name}.", 100))

        self.app.push_screen(ConfirmDialog(
            plain(f"Remove {person.name}?", 100),
            "Their roles and tokens go with them; their open streams close.",
            confirm="Remove", refuse="Keep"), decided)

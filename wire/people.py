"""People, their roles and their tokens, as the server and its clients share them.

A grant gives one role (wire/roles.py) to one person, in every environment or in the
ones it names; the permissions that act on a run (launch, decide, approve, cancel) are
judged against the run's environment, the others need the role in any environment.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from wire.base import Answer


class PersonCreate(BaseModel):
    name: str = Field(description="Their name in Workdeck (the audit log names them so).")
    os_user: str | None = Field(None, max_length=64, description=(
        "Their account on the server's host: over the Unix socket (opened to a group "
        "with `server --socket-group`) the kernel says who connects, and this says which "
        "person that is."))


class PersonChange(BaseModel):
    os_user: str | None = Field(max_length=64, description=(
        "Their account on the server's host (null: none)."))


class Grant(BaseModel):
    role: str = Field(description="viewer, operator, approver or admin.")
    environments: list[str] = Field(default_factory=list, description=(
        "Where the role holds for what acts on a run (empty: every environment)."))


class Person(Answer):
    name: str
    grants: list[Grant]
    builtin: bool = Field(description="The server's own account: always admin.")
    os_user: str | None = Field(None, description="Their account on the server's host.")
    created_at: str | None
    tokens: int = Field(description="Tokens they hold that are neither expired nor revoked.")


class TokenCreate(BaseModel):
    person: str | None = Field(None, description="Whose token (default: the one asking).")
    label: str = Field("", max_length=100, description="Where it is used (\"laptop\").")
    expires_s: float | None = Field(None, gt=0, le=10 * 365 * 86400, description=(
        "Seconds until it expires (none: never)."))


class Token(Answer):
    id: int
    person: str
    label: str
    created_at: str | None
    expires_at: str | None
    last_used_at: str | None


class TokenCreated(Token):
    token: str = Field(description="The token itself: shown this once, stored only as its "
                                   "SHA-256.")


class Whoami(Answer):
    name: str
    via: str = Field(description="How they came in: the socket, or the token's label.")
    os_user: str | None = Field(None, description=(
        "The account on the server's host they came from, over the socket."))
    grants: list[Grant]
    permissions: list[str] = Field(description="What they may do in some environment.")

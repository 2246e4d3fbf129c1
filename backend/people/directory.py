"""People, their grants and their tokens in the store. The server's own OS account is no
row here: it is always admin, so a fresh install needs no set-up."""

from __future__ import annotations

import hashlib
import pwd
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func
from sqlmodel import Session, select

from backend.errors import Conflict, InvalidInput, NotFound
from backend.fleet import validation
from backend.fleet.audit import audit, iso
from backend.store.db import Store
from backend.store.models import ApiToken, Environment, Person, RoleGrant, utcnow
from wire.roles import ROLES

TOKEN_PREFIX = "wd_"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _person(session: Session, name: str, server_account: str | None = None) -> Person:
    person = session.exec(select(Person).where(Person.name == name)).first()
    if person is None and name == server_account:
        raise InvalidInput(f"{name!r} is the server's own account: always admin, it cannot "
                           "be changed.")
    if person is None:
        raise NotFound(f"No person is named {name!r}: add them with `workdeck user add`.")
    return person


def _role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(f"There is no role {role!r}: the roles are "
                           f"{', '.join(ROLES)}.")
    return role


def os_account(account: str, server_account: str) -> str:
    """An account of the server's host that a person may be, or a refusal that says why."""
    account = account.strip()
    try:
        pwd.getpwnam(account)
    except (KeyError, UnicodeEncodeError, ValueError):
        raise InvalidInput(f"There is no account {account!r} on the server's host.") from None
    if account == server_account:
        raise Conflict(f"{account!r} is the server's own account, which is always admin.")
    return account


def _taken(session: Session, account: str, name: str) -> None:
    holder = session.exec(select(Person.name).where(Person.os_user == account,
                                                    Person.name != name)).first()
    if holder is not None:
        raise Conflict(f"The account {account!r} is already {holder}'s.")


def add_person(store: Store, name: str, server_account: str, actor: str,
               os_user: str | None = None) -> None:
    name = validation.name(name, "Name", spaces=False, limit=64)
    if name == server_account:
        raise Conflict(f"{name!r} is the server's own account, which is always admin.")
    account = os_account(os_user, server_account) if os_user is not None else None
    with store.write() as session:
        if session.exec(select(Person).where(Person.name == name)).first():
            raise Conflict(f"A person named {name!r} already exists.")
        if account is not None:
            _taken(session, account, name)
        session.add(Person(name=name, os_user=account))
        audit(session, actor, "person.add", name,
              f"OS account {account}" if account else "")


def set_os_user(store: Store, name: str, os_user: str | None, actor: str,
                server_account: str) -> None:
    """Map a person to an account of the server's host (None: to none)."""
    account = os_account(os_user, server_account) if os_user is not None else None
    with store.write() as session:
        person = _person(session, name, server_account)
        if account is not None:
            _taken(session, account, name)
        person.os_user = account
        session.add(person)
        audit(session, actor, "person.account", name,
              f"OS account {account}" if account else "no OS account")


def remove_person(store: Store, name: str, actor: str, server_account: str) -> None:
    with store.write() as session:
        person = _person(session, name, server_account)
        session.exec(delete(RoleGrant).where(RoleGrant.person_id == person.id))
        session.exec(delete(ApiToken).where(ApiToken.person_id == person.id))
        session.delete(person)
        audit(session, actor, "person.remove", name, "with their grants and tokens")


def grant(store: Store, name: str, role: str, environments: list[str], actor: str,
          server_account: str) -> None:
    """Give `role` to a person, everywhere or in the environments named (each once)."""
    role = _role(role)
    with store.write() as session:
        person = _person(session, name, server_account)
        known = set(session.exec(select(Environment.name)).all())
        for environment in environments:
            if environment not in known:
                raise NotFound(f"No environment is named {environment!r}.")
        held = {(g.role, g.environment) for g in session.exec(
            select(RoleGrant).where(RoleGrant.person_id == person.id)).all()}
        for environment in environments or [""]:
            if (role, environment) not in held and (role, "") not in held:
                session.add(RoleGrant(person_id=person.id, role=role,
                                      environment=environment))
        if not environments:
            # Everywhere takes in each environment it was given in before.
            session.exec(delete(RoleGrant).where(RoleGrant.person_id == person.id,
                                                 RoleGrant.role == role,
                                                 RoleGrant.environment != ""))
        audit(session, actor, "person.grant", name,
              role + (f" on {', '.join(environments)}" if environments else " everywhere"))


def revoke(store: Store, name: str, role: str, environments: list[str], actor: str,
           server_account: str) -> None:
    role = _role(role)
    with store.write() as session:
        person = _person(session, name, server_account)
        query = delete(RoleGrant).where(RoleGrant.person_id == person.id,
                                        RoleGrant.role == role)
        if environments:
            query = query.where(RoleGrant.environment.in_(environments))
        if not session.exec(query).rowcount:
            everywhere = session.exec(select(RoleGrant).where(
                RoleGrant.person_id == person.id, RoleGrant.role == role,
                RoleGrant.environment == "")).first()
            if everywhere is not None and environments:
                raise InvalidInput(f"{name} holds {role} everywhere: revoke it without --env, "
                                   "then grant it where they keep it.")
            raise InvalidInput(f"{name} holds no {role} role"
                               + (f" on {', '.join(environments)}" if environments else "")
                               + " to revoke.")
        audit(session, actor, "person.revoke", name,
              role + (f" on {', '.join(environments)}" if environments else " everywhere"))


def grants_of(session: Session, person_id: int) -> list[dict[str, Any]]:
    """A person's grants, one per role, with the environments it is limited to."""
    by_role: dict[str, list[str]] = {}
    for role, environment in session.exec(
            select(RoleGrant.role, RoleGrant.environment)
            .where(RoleGrant.person_id == person_id)
            .order_by(RoleGrant.role, RoleGrant.environment)).all():
        by_role.setdefault(role, [])
        if environment:
            by_role[role].append(environment)
    return [{"role": role, "environments": envs} for role, envs in by_role.items()]


def list_people(store: Store, server_account: str) -> list[dict[str, Any]]:
    now = utcnow()
    with store.read() as session:
        live = dict(session.exec(
            select(ApiToken.person_id, func.count())
            .where((ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > now))
            .group_by(ApiToken.person_id)).all())
        people = [{"name": p.name, "grants": grants_of(session, p.id), "builtin": False,
                   "os_user": p.os_user, "created_at": iso(p.created_at),
                   "tokens": live.get(p.id, 0)}
                  for p in session.exec(select(Person).order_by(Person.name)).all()]
    account = {"name": server_account, "grants": [{"role": "admin", "environments": []}],
               "builtin": True, "os_user": server_account, "created_at": None, "tokens": 0}
    return [account, *people]


def get_person(store: Store, name: str, server_account: str) -> dict[str, Any]:
    for person in list_people(store, server_account):
        if person["name"] == name:
            return person
    raise NotFound(f"No person is named {name!r}: add them with `workdeck user add`.")


def create_token(store: Store, name: str, label: str, expires_s: float | None,
                 actor: str) -> dict[str, Any]:
    """A new 256-bit token for a person, returned this once; only its SHA-256 is kept."""
    label = validation.free_text(label, 100, one_line=True)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with store.write() as session:
        person = _person(session, name)
        row = ApiToken(person_id=person.id, digest=digest(token), label=label,
                       expires_at=None if expires_s is None
                       else utcnow() + timedelta(seconds=expires_s))
        session.add(row)
        session.flush()
        audit(session, actor, "token.create", name,
              f"token {row.id}" + (f" ({label})" if label else "")
              + (f", expires {iso(row.expires_at)}" if row.expires_at else ""))
        shown = _token_public(row, name)
    return {**shown, "token": token}


def list_tokens(store: Store, name: str | None = None) -> list[dict[str, Any]]:
    with store.read() as session:
        query = (select(ApiToken, Person.name).join(Person, Person.id == ApiToken.person_id)
                 .order_by(ApiToken.id))
        if name is not None:
            query = query.where(Person.name == name)
        return [_token_public(t, owner) for t, owner in session.exec(query).all()]


def token_owner(store: Store, token_id: int) -> str:
    with store.read() as session:
        owner = session.exec(select(Person.name).join(ApiToken, ApiToken.person_id == Person.id)
                             .where(ApiToken.id == token_id)).first()
    if owner is None:
        raise NotFound(f"No token has the number {token_id}.")
    return owner


def revoke_token(store: Store, token_id: int, actor: str) -> None:
    with store.write() as session:
        row = session.get(ApiToken, token_id)
        if row is None:
            raise NotFound(f"No token has the number {token_id}.")
        owner = session.get(Person, row.person_id)
        session.delete(row)
        audit(session, actor, "token.revoke", owner.name if owner else "?",
              f"token {token_id}" + (f" ({row.label})" if row.label else ""))


def _token_public(row: ApiToken, owner: str) -> dict[str, Any]:
    return {"id": row.id, "person": owner, "label": row.label,
            "created_at": iso(row.created_at), "expires_at": iso(row.expires_at),
            "last_used_at": iso(row.last_used_at)}


@dataclass(frozen=True)
class Credentials:
    """What the server checks requests against, read whole (it is small)."""

    tokens: dict[str, tuple[int, str, str, Any]]  # digest: (id, owner, label, expiry)
    grants: dict[str, tuple[tuple[str, str], ...]]  # person: (role, environment)...
    accounts: dict[str, str]  # OS account: person


def credentials(store: Store) -> Credentials:
    with store.read() as session:
        accounts = {account: name for name, account in session.exec(
            select(Person.name, Person.os_user).where(Person.os_user.is_not(None))).all()}
        tokens = {t.digest: (t.id, owner, t.label, t.expires_at) for t, owner in session.exec(
            select(ApiToken, Person.name).join(Person, Person.id == ApiToken.person_id)).all()}
        grants: dict[str, list[tuple[str, str]]] = {}
        for owner, role, environment in session.exec(
                select(Person.name, RoleGrant.role, RoleGrant.environment)
                .join(RoleGrant, RoleGrant.person_id == Person.id)).all():
            grants.setdefault(owner, []).append((role, environment))
    return Credentials(tokens, {name: tuple(held) for name, held in grants.items()},
                       accounts)


def touch_tokens(store: Store, used: dict[int, Any]) -> None:
    """When each token was last used (written in batches, not on every request)."""
    with store.write() as session:
        for token_id, at in used.items():
            row = session.get(ApiToken, token_id)
            if row is not None:
                row.last_used_at = at
                session.add(row)

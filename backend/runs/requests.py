"""Cancels and decisions for a run that another node executes.

Only the node that executes a run can stop its steps or answer what it waits for. A node
asked about another's run stores the request; the executing node, woken by the fan-out
(or at its next look, within a second), acts on it as if asked itself, and stores what
came of it; the asking node answers with that, then removes the request. The requests of
a run interrupted by a takeover are answered by the takeover.

Every function here is called in a thread.
"""

from __future__ import annotations

from sqlalchemy import delete, update
from sqlmodel import select

from backend.errors import Conflict, Forbidden, InvalidInput, NotFound, WorkdeckError
from backend.store.db import Store
from backend.store.models import Run, RunRequest

_ERRORS: dict[str, type[WorkdeckError]] = {
    cls.code: cls for cls in (Conflict, Forbidden, InvalidInput, NotFound)}


def ask(store: Store, run_id: int, action: str, actor: str, person: str, note: str) -> int:
    with store.write() as session:
        request = RunRequest(run_id=run_id, action=action, actor=actor, person=person,
                             note=note)
        session.add(request)
        session.flush()
        return request.id or 0


def pending(store: Store, node: str) -> list[RunRequest]:
    """The requests not acted on yet for the runs `node` executes, oldest first."""
    with store.read() as session:
        return list(session.exec(
            select(RunRequest).join(Run, Run.id == RunRequest.run_id)
            .where(Run.node == node, RunRequest.done == False)  # noqa: E712
            .order_by(RunRequest.id)).all())


def answer(store: Store, request_id: int, error: WorkdeckError | None) -> None:
    with store.write() as session:
        session.exec(update(RunRequest).where(RunRequest.id == request_id).values(  # type: ignore[call-overload]
            done=True, error="" if error is None else f"{error.code}:{error}"))


def answer_all(session: object, runs: list[int], why: str) -> None:
    """In a takeover's transaction: the requests for runs it interrupted are answered."""
    session.exec(update(RunRequest).where(  # type: ignore[attr-defined]
        RunRequest.run_id.in_(runs), RunRequest.done == False)  # type: ignore[attr-defined]  # noqa: E712
        .values(done=True, error=f"conflict:{why}"))


def outcome(store: Store, request_id: int) -> WorkdeckError | bool | None:
    """False while not acted on; then None (done) or the refusal, and it is removed."""
    with store.read() as session:  # looked at often: a read, until there is an answer
        request = session.get(RunRequest, request_id)
        if request is None:
            return None
        if not request.done:
            return False
    with store.write() as session:
        session.exec(delete(RunRequest).where(RunRequest.id == request_id))  # type: ignore[call-overload]
    if not request.error:
        return None
    code, _, sentence = request.error.partition(":")
    return _ERRORS.get(code, Conflict)(sentence)

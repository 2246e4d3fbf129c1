"""Notifications on the wire: where Workdeck tells of what happens, and each delivery."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from wire.base import Answer

Event = Literal["run-failed", "run-succeeded", "run-waiting", "worker-unavailable",
                "pool-short"]


class DeliveryShown(Answer):
    id: int
    event: str = Field(description="An event, or \"test\".")
    subject: str = Field(description="What it was about: \"run 12\", \"worker w-01\".")
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    answer: str = Field(description="The receiver's last answer (\"200 OK in 12 ms\", "
                                    "\"500 Internal Server Error: ...\", \"no answer "
                                    "within 10 s\").")
    created_at: str | None
    delivered_at: str | None
    next_at: str | None = Field(description="Its next attempt, while pending.")


class Notification(Answer):
    name: str
    url: str = Field(description="Its scheme and host only: the path may be its secret.")
    format: Literal["json", "slack"]
    events: list[Event]
    environments: list[str] = Field(description="Only runs there (none: every one).")
    pools: list[str] = Field(description="Only workers, pools and runs there (none: every "
                                         "one).")
    signed: bool = Field(description="Bodies carry X-Workdeck-Signature (HMAC-SHA256).")
    actor: str
    created_at: str | None
    last: DeliveryShown | None
    deliveries: list[DeliveryShown] = Field(description="The newest (on `GET "
                                                        "/api/notifications/NAME` only).")


class NotificationRequest(BaseModel):
    name: str
    url: str
    format: Literal["json", "slack"] = "json"
    events: list[str] = Field(default_factory=list, description=(
        "None given: run-failed, run-waiting, worker-unavailable, pool-short."))
    environments: list[str] = Field(default_factory=list)
    pools: list[str] = Field(default_factory=list)
    secret: str | None = Field(None, description="Signs each body; kept encrypted.")

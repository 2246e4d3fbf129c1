"""What every answer model of the API shares."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Answer(BaseModel):
    """A model of what the server answers. Unknown keys are refused, so that the published
    schema lists every key there is, and a key the server adds without declaring it fails
    the contract tests instead of reaching clients undocumented."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


def renamed(new: str) -> str:
    """The deprecation note of a key kept under its old name for one release."""
    return f"Renamed `{new}`; this name is kept for one release (README, \"Changed\")."

"""The base of every command: a ``command_id`` (idempotency key) and a ``user_id``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from events import SafeId


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command_id: SafeId
    user_id: SafeId
    correlation_id: SafeId | None = None

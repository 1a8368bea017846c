"""The base of every command: a ``command_id`` (idempotency key) and a ``user_id``.

Input models are strict (``STRICT_INPUT``): an integer field refuses ``"5"``, ``true`` and
``5.0``, a float field refuses strings (integers are accepted), a bool refuses ``1``;
float fields also refuse non-finite values (``allow_inf_nan=False``). Strictness is per
model, so nested input models (messages, embeddings) carry the same config. Literals and
ids (strings) are unaffected; no input model has a datetime or Enum field (strict
python-mode validation would refuse their JSON forms: add such a field with
``Field(strict=False)``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from events import SafeId

STRICT_INPUT = ConfigDict(extra="forbid", frozen=True, strict=True)
"""The config of every command and query model (see the module docstring)."""


class Command(BaseModel):
    model_config = STRICT_INPUT

    command_id: SafeId
    user_id: SafeId
    correlation_id: SafeId | None = None

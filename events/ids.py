"""Identifier rules: every id that becomes part of a NATS subject is a safe token."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from pydantic import AfterValidator

from events.errors import InvalidId

_TOKEN = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")


def check_token(value: str, *, what: str = "id") -> str:
    """Return ``value`` if it is a safe subject token, else raise :class:`InvalidId`.

    Safe means 1-128 characters of ``A-Z a-z 0-9 _ -``: no ``.``, ``*``, ``>``,
    spaces or control characters, which NATS would read as subject syntax.
    """
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise InvalidId(
            f"{what} {value!r} is not a valid id: use 1-128 characters of A-Z a-z 0-9 _ -",
            details={"field": what, "value": str(value)[:200]},
        )
    return value


def _validate(value: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError("must be 1-128 characters of A-Z a-z 0-9 _ - (no '.', '*', '>', spaces)")
    return value


SafeId = Annotated[str, AfterValidator(_validate)]
"""A pydantic field type for ids that end up in subjects."""


def new_id() -> str:
    """A fresh random id (32 hex characters), safe as a subject token."""
    return uuid.uuid4().hex


def derived_id(*parts: str) -> str:
    """A deterministic id derived from ``parts`` (uuid5): a retried command gets the same id."""
    return uuid.uuid5(uuid.NAMESPACE_URL, "threadlog:" + ":".join(parts)).hex

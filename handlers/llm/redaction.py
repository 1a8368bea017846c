"""Redaction of secrets from requests and responses before they leave the model layer.

``redact`` returns a deep copy in which

* the value of every key that names a credential (``api_key``, ``Authorization``,
  ``x-api-key``, ``cookie``, ``password``, ``secret``, ``access_token``... in any case, with
  ``-`` or ``_``) is replaced by ``"[REDACTED]"``, whatever its type;
* inside any string, ``Bearer <token>``, ``sk-...``-style keys and ``key=``/``api_key=``/
  ``token=`` URL query values are replaced.

Token *counts* (``prompt_tokens``, ``total_tokens``...) are not secrets and are kept. The
input is never mutated. Objects that are neither dicts, lists, tuples nor strings are kept
as they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[REDACTED]"

_SECRET_KEY = re.compile(
    r"^(?:.*[-_])?(?:api[-_]?key|apikey|authorization|auth|secret|client[-_]?secret|password|"
    r"passwd|cookie|set[-_]cookie|token|access[-_]?token|refresh[-_]?token|session[-_]?token|"
    r"id[-_]?token|credentials?|private[-_]?key|secret[-_]?access[-_]?key)$",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_KEY_LIKE = re.compile(r"\b(?:sk|rk|pk)-[A-Za-z0-9_-]{8,}|\bAIza[0-9A-Za-z_-]{20,}")
_QUERY_SECRET = re.compile(r"(?i)([?&](?:key|api[-_]?key|token|access_token)=)[^&#\s]+")


def is_secret_key(key: str) -> bool:
    """Whether a mapping key names a credential."""
    return bool(_SECRET_KEY.match(key))


def redact_text(text: str) -> str:
    """Replace bearer tokens, API-key-shaped words and secret URL query values in a string."""
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _KEY_LIKE.sub(REDACTED, text)
    return _QUERY_SECRET.sub(lambda m: m.group(1) + REDACTED, text)


def redact(value: Any) -> Any:
    """A deep copy of ``value`` with credentials replaced (see the module docstring)."""
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and is_secret_key(k) and v is not None
                else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value

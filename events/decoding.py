"""Strict decoding of request bodies: bytes -> a JSON object, bounded, finite, or a clear error.

Every command and query body goes through :func:`decode_json_body` (FastStream subscribers
through :func:`faststream_decoder`, the query server and the scheduler through
:func:`validate_request`), so every subject refuses the same inputs the same way.

Guarantees
- The result is a ``dict`` parsed by ``pydantic_core.from_json`` (jiter): strict JSON, so
  ``Infinity``, ``NaN``, invalid UTF-8, trailing garbage and non-object bodies are refused.
  An empty body is ``{}`` (the model then names the missing fields).
- Nesting is bounded by ``max_depth`` (default :data:`MAX_DEPTH`, 64 containers). jiter
  itself stops at 200 levels (a fixed limit, reported as "recursion limit exceeded"), so
  parsing never recurses deeper than that; our tighter bound is checked on the raw bytes
  at C speed (strings stripped, then innermost bracket pairs removed once per level).
- Numbers are finite: a literal that overflows a float (``1e400``) is refused too.
- Refusals raise :class:`ValidationFailed` (``invalid_json``: not JSON, not UTF-8;
  ``invalid_input``: valid JSON but not an object (the schema's error, as before), too
  deep, non-finite number). These are expected errors:
  nothing here logs, and the reply mapping (``events.replies.reply_for``) logs no
  traceback for them.

Failure modes: none beyond the refusals above; the cost is O(body size) plus one pass per
nesting level over the bracket characters only when the body has more than ``max_depth``
of them.
"""

from __future__ import annotations

import math
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import from_json

from events import PayloadTooLarge, ValidationFailed
from events.errors import InvalidJson
from events.identity import bind_user
from events.replies import validation_failure

MAX_DEPTH = 64
"""Containers (objects and arrays) a request body may nest."""

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_SQUARE = bytes.maketrans(b"{}", b"[]")
_HUGE_NUMBER = re.compile(rb"[eE][+]?0*[0-9]{3,}|[0-9]{309,}")
M = TypeVar("M", bound=BaseModel)


def decode_json_body(raw: bytes | bytearray | memoryview | None, *,
                     max_depth: int = MAX_DEPTH, subject: str | None = None) -> dict[str, Any]:
    """The JSON object in ``raw``; see the module docstring for what is refused. With
    ``subject``, the body acts for the subject's user (``events.identity.bind_user``)."""
    data = bytes(raw or b"")
    if not data.strip():
        return bind_user({}, subject)
    try:
        value = from_json(data, allow_inf_nan=False)
    except ValueError as exc:
        raise _parse_error(data, str(exc), max_depth) from None
    if not isinstance(value, dict):
        raise ValidationFailed(f"the request body must be a JSON object, not {_kind(value)}",
                               details={"type": _kind(value)})
    skeleton = _STRING.sub(b'""', data)
    if skeleton.count(b"{") + skeleton.count(b"[") > max_depth:
        _check_depth(skeleton, max_depth)
    if _HUGE_NUMBER.search(skeleton) and not _all_finite(value):
        raise ValidationFailed("a number in the request body is out of range (not finite)",
                               details={"reason": "non_finite_number"})
    return bind_user(value, subject)


async def faststream_decoder(msg: Any) -> dict[str, Any]:
    """A FastStream ``decoder=`` (one-argument form: FastStream then never calls its own
    decoder): ``NatsBroker(..., decoder=faststream_decoder)``. Decodes ``msg.body`` with
    :func:`decode_json_body`; a refusal raises inside the subscriber's consume scope, where
    the error middleware turns it into the error reply."""
    raw = getattr(msg, "raw_message", None)
    return decode_json_body(msg.body, subject=getattr(raw, "subject", None))


def validate_request(model: type[M], raw: bytes | None, *,
                     max_bytes: int | None = None, max_depth: int = MAX_DEPTH,
                     subject: str | None = None) -> M:
    """Size limit, strict decoding and ``model`` validation of one request body, as the
    FastStream path does them (for subscribers served with nats-py directly).

    Raises :class:`PayloadTooLarge` (``payload_too_large``), :class:`ValidationFailed`
    (``invalid_json`` / ``invalid_input`` with ``details.errors``)."""
    body = decode_json_body(check_size(raw, max_bytes), max_depth=max_depth, subject=subject)
    return validate_model(model, body)


def check_size(raw: bytes | None, max_bytes: int | None) -> bytes | None:
    """``raw`` if within ``max_bytes``, else :class:`PayloadTooLarge`."""
    size = len(raw or b"")
    if max_bytes is not None and size > max_bytes:
        raise PayloadTooLarge(f"request body is {size} bytes; the limit is {max_bytes}",
                              details={"size": size, "limit": max_bytes})
    return raw


def validate_model(model: type[M], body: dict[str, Any]) -> M:
    """``model`` validated from a decoded body (``invalid_input`` naming the fields)."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise validation_failure(exc) from None


def _parse_error(data: bytes, message: str, max_depth: int) -> ValidationFailed:
    if "recursion limit" in message:
        return _too_deep(max_depth)
    try:
        from_json(data, allow_inf_nan=True)
    except ValueError:
        return InvalidJson(f"the request body is not valid JSON: {message}",
                           details={"error": message})
    return ValidationFailed("numbers must be finite: Infinity and NaN are not JSON",
                            details={"reason": "non_finite_number"})


def _check_depth(skeleton: bytes, max_depth: int) -> None:
    # Valid JSON brackets match, so their kind does not matter for the depth: one kind,
    # then each pass removes exactly the innermost pairs (one level).
    brackets = skeleton.translate(_SQUARE, _NOT_BRACKETS)
    for _ in range(max_depth):
        if not brackets:
            return
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):  # cannot happen for parsed JSON; be safe
            break
        brackets = shorter
    if brackets:
        raise _too_deep(max_depth)


def _too_deep(max_depth: int) -> ValidationFailed:
    return ValidationFailed(f"the request body nests deeper than {max_depth} levels "
                            "(objects and arrays)", details={"max_depth": max_depth})


def _all_finite(value: Any) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, float):
            if not math.isfinite(v):
                return False
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return True


def _kind(value: Any) -> str:
    return {str: "string", int: "number", float: "number", bool: "boolean", list: "array",
            type(None): "null"}.get(type(value), type(value).__name__)

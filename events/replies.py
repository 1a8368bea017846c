"""The one reply shape of every command and query (request/reply over core NATS), and the
one mapping from exceptions to replies.

Success: ``{"ok": true, "result": ..., "seq": <stream seq of the last event appended>}``
(``seq`` is the projection checkpoint for queries, ``null`` when nothing applies).
Failure: ``{"ok": false, "error": {"code": ..., "message": ..., "details": {...}}}``.

:func:`reply_for` is the only place an exception becomes a reply (the FastStream error
middleware, the query service and the scheduler's ``cmd.invoices.run`` all call it):
- a :class:`ThreadlogError` keeps its code, message and details (not logged: expected);
- a pydantic ``ValidationError`` is ``invalid_input`` naming the failing fields
  (``invalid_json`` when the body itself was not an object);
- anything else is ``internal``, logged once with its traceback.

:func:`bounded_reply_bytes` is the only place a reply is checked against the connection's
max payload: a reply that would not fit (nats-py refuses it, the server would drop it and
the client would only see a timeout) becomes ``reply_too_large`` with its size and the
limit, telling the client to ask for a smaller page.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from events.errors import (
    InvalidJson,
    ReplyTooLarge,
    ThreadlogError,
    ValidationFailed,
    pydantic_error_details,
)

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str
    message: str
    details: dict[str, Any] = {}


class Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ok: bool
    result: Any = None
    seq: int | None = None
    error: ErrorBody | None = None

    @classmethod
    def success(cls, result: Any = None, seq: int | None = None) -> Reply:
        return cls(ok=True, result=result, seq=seq)

    @classmethod
    def failure(cls, exc: ThreadlogError) -> Reply:
        return cls(ok=False, error=ErrorBody(**exc.to_dict()))

    @classmethod
    def from_exception(cls, exc: BaseException, *, where: str = "a handler") -> Reply:
        """Same as :func:`reply_for`."""
        return reply_for(exc, where=where)

    def unwrap(self) -> Any:
        """The result, or raise the error as a :class:`ThreadlogError` with its code."""
        if self.ok:
            return self.result
        assert self.error is not None
        raise ThreadlogError(self.error.message, code=self.error.code, details=self.error.details)


def reply_for(exc: BaseException, *, where: str = "a handler") -> Reply:
    """The failure reply of ``exc`` (see the module docstring). ``where`` names the
    subject or component in the log line of an unexpected error."""
    if isinstance(exc, ThreadlogError):
        return Reply.failure(exc)
    if isinstance(exc, ValidationError):
        return Reply.failure(validation_failure(exc))
    log.error("unexpected error in %s", where, exc_info=exc)
    return Reply.failure(ThreadlogError(f"internal error: {type(exc).__name__}",
                                        code="internal"))


def validation_failure(exc: ValidationError) -> ValidationFailed:
    """``invalid_input`` listing the failing fields, or ``invalid_json`` when the whole
    body was not an object. A leading ``body`` location (FastStream's argument name) is
    dropped, so both paths name fields alike."""
    if _is_not_an_object(exc):
        return InvalidJson("the request body is not a JSON object")
    details = pydantic_error_details(exc)
    for err in details["errors"]:
        if len(err["loc"]) > 1 and err["loc"][0] == "body":
            err["loc"] = err["loc"][1:]
    fields = ", ".join(".".join(e["loc"]) or "(body)" for e in details["errors"])
    return ValidationFailed(f"invalid input: {fields}", details=details)


def _is_not_an_object(exc: ValidationError) -> bool:
    errs = exc.errors(include_url=False)
    return bool(errs) and all(
        len(e["loc"]) <= 1 and e["type"] in ("model_type", "dict_type", "model_attributes_type")
        and isinstance(e.get("input"), str | bytes) for e in errs)


REPLY_TOO_LARGE_HINT = "use limit/cursor to page (ask for fewer items per request)"


def reply_too_large(size: int, limit: int) -> Reply:
    """The ``reply_too_large`` failure for a reply of ``size`` bytes over ``limit``."""
    return Reply.failure(ReplyTooLarge(
        f"the reply is {size} bytes; the connection's limit is {limit}: "
        f"{REPLY_TOO_LARGE_HINT}", details={"size": size, "limit": limit}))


def bounded_reply_bytes(reply: Reply, limit: int) -> bytes:
    """``reply`` encoded, or the encoded :func:`reply_too_large` when it is over ``limit``
    bytes (pass the connection's ``max_payload``, less any header bytes sent with it)."""
    data = reply.model_dump_json().encode()
    if len(data) > limit:
        return reply_too_large(len(data), limit).model_dump_json().encode()
    return data


def bounded_reply(reply: Reply, limit: int | None) -> Reply:
    """``reply``, or :func:`reply_too_large` when its JSON encoding is over ``limit``
    bytes (None: no limit). Encodes once to measure; prefer :func:`bounded_reply_bytes`
    where the bytes are sent."""
    if limit is None:
        return reply
    size = len(reply.model_dump_json().encode())
    return reply if size <= limit else reply_too_large(size, limit)

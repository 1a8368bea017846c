"""Broker middlewares: size limit, and turning every exception into an error reply.

Every request gets exactly one reply of the shape in ``events.replies``: malformed JSON is
``invalid_json``, a schema violation ``invalid_input`` (with the failing fields), a
threadlog error its own code, anything unexpected ``internal`` (logged with traceback).
"""

from __future__ import annotations

import logging
from typing import Any

from faststream import BaseMiddleware, ExceptionMiddleware
from pydantic import ValidationError

from events import PayloadTooLarge, ThreadlogError, ValidationFailed
from events.errors import pydantic_error_details
from events.replies import Reply

log = logging.getLogger(__name__)


def _is_not_json(exc: ValidationError) -> bool:
    errs = exc.errors(include_url=False)
    return bool(errs) and all(
        len(e["loc"]) <= 1 and e["type"] in ("model_type", "dict_type", "model_attributes_type")
        and isinstance(e.get("input"), str | bytes) for e in errs)


def error_middleware() -> ExceptionMiddleware:
    mw = ExceptionMiddleware()

    @mw.add_handler(ValidationError, publish=True)
    async def _on_validation(exc: ValidationError) -> dict[str, Any]:
        if _is_not_json(exc):
            err = ValidationFailed("the request body is not a JSON object")
            err.code = "invalid_json"
        else:
            details = pydantic_error_details(exc)
            fields = ", ".join(".".join(e["loc"][1:] or e["loc"]) for e in details["errors"])
            err = ValidationFailed(f"invalid input: {fields}", details=details)
        return Reply.failure(err).model_dump(mode="json")

    @mw.add_handler(ThreadlogError, publish=True)
    async def _on_threadlog(exc: ThreadlogError) -> dict[str, Any]:
        return Reply.failure(exc).model_dump(mode="json")

    @mw.add_handler(Exception, publish=True)
    async def _on_any(exc: Exception) -> dict[str, Any]:
        log.exception("unexpected error in a handler", exc_info=exc)
        err = ThreadlogError(f"internal error: {type(exc).__name__}", code="internal")
        return Reply.failure(err).model_dump(mode="json")

    return mw


def size_limit_middleware(max_bytes: int) -> type[BaseMiddleware]:
    """Refuse request bodies above ``max_bytes`` before any decoding."""

    class SizeLimit(BaseMiddleware):
        async def consume_scope(self, call_next: Any, msg: Any) -> Any:
            size = len(msg.body or b"")
            if size > max_bytes:
                raise PayloadTooLarge(f"request body is {size} bytes; the limit is {max_bytes}",
                                      details={"size": size, "limit": max_bytes})
            return await call_next(msg)

    return SizeLimit

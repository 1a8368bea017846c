"""The threadlog error hierarchy.

Every error a caller can see carries a stable ``code`` (used in command and query
replies), a human ``message`` and structured ``details``::

    ThreadlogError                      code
    ├── ValidationFailed                invalid_input
    │   ├── InvalidJson                 invalid_json
    │   ├── InvalidId                   invalid_id
    │   └── PayloadTooLarge             payload_too_large
    ├── ReplyTooLarge                   reply_too_large
    ├── UnknownEventType                unknown_event_type
    ├── NotFound                        not_found
    ├── Forbidden                       forbidden
    ├── ConcurrencyError                conflict
    ├── InvalidTransition               invalid_transition
    ├── Timeout                         timeout
    └── Unavailable                     unavailable

Later packages subclass these; a subclass may refine ``code``.
"""

from __future__ import annotations

from typing import Any


class ThreadlogError(Exception):
    """Base of every threadlog error; ``to_dict`` is the wire shape of an error reply."""

    code: str = "internal"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class ValidationFailed(ThreadlogError):
    """Input did not match its schema; ``details['errors']`` lists the fields."""

    code = "invalid_input"


class InvalidJson(ValidationFailed):
    """A request body is not JSON, not UTF-8, or not a JSON object."""

    code = "invalid_json"


class InvalidId(ValidationFailed):
    """An id is not a safe NATS subject token."""

    code = "invalid_id"


class PayloadTooLarge(ValidationFailed):
    """A command, event or document is above its configured size limit."""

    code = "payload_too_large"


class ReplyTooLarge(ThreadlogError):
    """A reply is above the connection's max payload; ``details``: ``size``, ``limit``.
    The request should ask for less (``limit``/``cursor`` pages)."""

    code = "reply_too_large"


class UnknownEventType(ThreadlogError):
    """An event type (or version) that the catalogue cannot decode."""

    code = "unknown_event_type"


class NotFound(ThreadlogError):
    code = "not_found"


class Forbidden(ThreadlogError):
    """The resource exists but belongs to another user."""

    code = "forbidden"


class ConcurrencyError(ThreadlogError):
    """An append's expected version did not match; ``current_version`` is the actual one."""

    code = "conflict"

    def __init__(self, message: str, *, current_version: int,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details={**(details or {}), "current_version": current_version})
        self.current_version = current_version


class InvalidTransition(ThreadlogError):
    code = "invalid_transition"


class Timeout(ThreadlogError):
    code = "timeout"


class Unavailable(ThreadlogError):
    code = "unavailable"


def pydantic_error_details(exc: Any) -> dict[str, Any]:
    """Turn a ``pydantic.ValidationError`` into JSON-safe details (location, message, type)."""
    errors = []
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        errors.append({"loc": [str(p) for p in err["loc"]], "msg": err["msg"], "type": err["type"]})
    return {"errors": errors}

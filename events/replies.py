"""The one reply shape of every command and query (request/reply over core NATS).

Success: ``{"ok": true, "result": ..., "seq": <stream seq of the last event appended>}``
(``seq`` is the projection checkpoint for queries, ``null`` when nothing applies).
Failure: ``{"ok": false, "error": {"code": ..., "message": ..., "details": {...}}}``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from events.errors import ThreadlogError


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

    def unwrap(self) -> Any:
        """The result, or raise the error as a :class:`ThreadlogError` with its code."""
        if self.ok:
            return self.result
        assert self.error is not None
        raise ThreadlogError(self.error.message, code=self.error.code, details=self.error.details)

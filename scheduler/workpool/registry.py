"""What a work function and an ``on_complete`` handler receive, and the name registry.

Functions are registered by name (a safe subject token): the name is what is recorded in
``work_enqueued`` and routed on (``work.<pool>.run.<name>``), so a process may enqueue by
name a function only other processes know.

Guarantees: ``idempotency_key`` is stable across redeliveries of the same attempt
(``<work_id>:<attempt>``) and across re-runs of a completion (``<work_id>:complete``):
pass it to external systems so a re-run after a crash is not a second effect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from events.ids import check_token
from scheduler.workpool.status import WorkResult


@dataclass(frozen=True)
class WorkContext:
    """Passed to a work function as its first argument."""

    pool: str
    work_id: str
    attempt: int
    fn: str

    @property
    def idempotency_key(self) -> str:
        return f"{self.work_id}:{self.attempt}"


@dataclass(frozen=True)
class CompletionContext:
    """Passed to an ``on_complete`` handler (exactly one recorded run per item)."""

    pool: str
    work_id: str
    fn: str
    context: Any
    result: WorkResult
    attempts: int

    @property
    def idempotency_key(self) -> str:
        return f"{self.work_id}:complete"


WorkFunction = Callable[[WorkContext, Any], Awaitable[Any]]
CompletionHandler = Callable[[CompletionContext], Awaitable[None]]
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


class Registry:
    """Name -> coroutine function, for work functions and completion handlers alike."""

    def __init__(self) -> None:
        self._fns: dict[str, Callable[..., Awaitable[Any]]] = {}

    def add(self, fn: F, name: str | None = None) -> F:
        key = check_token(name or fn.__name__, what="function name")
        existing = self._fns.get(key)
        if existing is not None and existing is not fn:
            raise ValueError(f"function name {key!r} registered twice")
        self._fns[key] = fn
        return fn

    def get(self, name: str) -> Callable[..., Awaitable[Any]] | None:
        return self._fns.get(name)

    def names(self) -> list[str]:
        return sorted(self._fns)

    def name_of(self, fn: Callable[..., Any] | str) -> str:
        """The registered name of ``fn`` (a name is returned as is, checked)."""
        if isinstance(fn, str):
            return check_token(fn, what="function name")
        for key, f in self._fns.items():
            if f is fn:
                return key
        raise ValueError(f"{getattr(fn, '__name__', fn)!r} is not registered on this pool")

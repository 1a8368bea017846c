"""The registry of workflow definitions and completion handlers.

``workflows = Workflows()``; ``@workflows.define("name", version=1)`` over
``async def handler(step, args)``; ``@workflows.on_complete("notify")`` over
``async def notify(outcome)`` (an :class:`RunOutcome`). A run records the name and
version it started with; a worker takes only runs of the (name, version) pairs it has
registered, so a new version of a handler never replays an old run's journal. Keep old
versions registered until their runs are done, or guard changes with ``step.patched``.

Failure modes: defining the same (name, version) twice raises ``ValueError``; asking for
an unknown one raises :class:`UnknownWorkflow`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from events.ids import check_token
from events.workflow_events import ErrorInfo, RunOutcomeStatus
from scheduler.workflows.errors import UnknownWorkflow

if TYPE_CHECKING:
    from scheduler.workflows.step import Step

Handler = Callable[["Step", Any], Awaitable[Any]]
H = TypeVar("H", bound=Handler)


@dataclass(frozen=True)
class RunOutcome:
    """What a completion handler gets. ``key`` is its idempotency key: the handler runs at
    least once per run generation (a crash after it ran and before it was recorded runs
    it again), its record exactly once."""

    run_id: str
    name: str
    status: RunOutcomeStatus
    result: Any
    error: ErrorInfo | None
    context: Any
    key: str


CompletionHandler = Callable[[RunOutcome], Awaitable[None]]
C = TypeVar("C", bound=CompletionHandler)


@dataclass(frozen=True)
class WorkflowDefinition:
    name: str
    version: int
    handler: Handler


class Workflows:
    """Workflow handlers by (name, version), completion handlers by name."""

    def __init__(self) -> None:
        self._defs: dict[tuple[str, int], WorkflowDefinition] = {}
        self._completions: dict[str, CompletionHandler] = {}

    def define(self, name: str, *, version: int = 1) -> Callable[[H], H]:
        check_token(name, what="workflow name")
        if version < 1:
            raise ValueError("workflow versions start at 1")

        def deco(fn: H) -> H:
            if (name, version) in self._defs:
                raise ValueError(f"workflow {name!r} version {version} defined twice")
            self._defs[(name, version)] = WorkflowDefinition(name, version, fn)
            return fn

        return deco

    def on_complete(self, name: str) -> Callable[[C], C]:
        def deco(fn: C) -> C:
            if name in self._completions:
                raise ValueError(f"completion handler {name!r} defined twice")
            self._completions[name] = fn
            return fn

        return deco

    def get(self, name: str, version: int) -> WorkflowDefinition:
        try:
            return self._defs[(name, version)]
        except KeyError:
            raise UnknownWorkflow(f"workflow {name!r} version {version} is not defined here",
                                  details={"name": name, "version": version}) from None

    def latest(self, name: str) -> int | None:
        versions = [v for (n, v) in self._defs if n == name]
        return max(versions) if versions else None

    def definitions(self) -> list[WorkflowDefinition]:
        return [self._defs[k] for k in sorted(self._defs)]

    def completion(self, name: str) -> CompletionHandler:
        try:
            return self._completions[name]
        except KeyError:
            raise UnknownWorkflow(f"completion handler {name!r} is not defined here",
                                  details={"on_complete": name}) from None

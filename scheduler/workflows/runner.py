"""Drive one execution of a run to its next resting point: finished or suspended.

``run_once`` replays the handler against the journal, lets it run live, and records
the run's outcome (``workflow_completed`` / ``workflow_failed`` / ``workflow_canceled``),
then its completion: the ``on_complete`` handler (with its idempotency key), the
parent's ``child_completed``, and ``completion_handled`` at the run's expected version.

Guarantees: the outcome and ``completion_handled`` are each recorded once (expected
version plus derived message ids); ``on_complete`` runs at least once per generation and
again only if its worker died before ``completion_handled`` was stored.

Failure modes: :class:`OwnershipLost` (another worker owns the run) and
:class:`Unavailable` propagate to the worker; an exception from ``on_complete``
propagates too (the worker retries the completion later).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any

from events.workflow_events import (
    ChildCompleted,
    CompletionHandled,
    ErrorInfo,
    RunSuspended,
    WorkflowCanceled,
    WorkflowCompleted,
    WorkflowFailed,
    run_key,
    step_key,
)
from scheduler.workflows.definition import RunOutcome, WorkflowDefinition, Workflows
from scheduler.workflows.errors import RunAborted, RunCanceled, error_info
from scheduler.workflows.execution import Execution, Suspended
from scheduler.workflows.launcher import Launcher
from scheduler.workflows.step import Step


@dataclass(frozen=True)
class Finished:
    status: str


class Runner:
    def __init__(self, workflows: Workflows, launcher: Launcher) -> None:
        self.workflows = workflows
        self.launcher = launcher

    async def run_once(self, ex: Execution, definition: WorkflowDefinition
                       ) -> Finished | Suspended:
        j = ex.journal
        if j.outcome is None:
            if j.cancel_requested is not None:
                await self._canceled(ex)
            else:
                done = await self._drive(ex, definition)
                if isinstance(done, Suspended):
                    return done
        if not j.completion_handled:
            await self._complete(ex)
        return Finished(j.outcome or "completed")

    async def _start_child(self, ex: Execution, child_id: str, name: str,
                           version: int | None, args: Any, step_no: int) -> None:
        v = version or self.workflows.latest(name) or 1
        started = ex.journal.started
        await self.launcher.start(child_id, name, v, args,
                                  parent=(ex.run_id, ex.generation, step_no),
                                  user_id=started.user_id if started else None)

    async def _drive(self, ex: Execution, definition: WorkflowDefinition) -> Suspended | None:
        j = ex.journal
        assert j.started is not None

        async def start_child(child_id: str, name: str, version: int | None, args: Any,
                              step_no: int) -> None:
            await self._start_child(ex, child_id, name, version, args, step_no)

        step = Step(ex, j.started.version, start_child)
        task: asyncio.Task[Any] = asyncio.ensure_future(definition.handler(step, j.started.args))
        ex.handler_task = task
        try:
            return await self._await_handler(ex, task)
        finally:
            if not task.done():  # the worker stopped (or lost the run) mid-execution
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            await ex.stop_branches()

    async def _await_handler(self, ex: Execution, task: asyncio.Task[Any]) -> Suspended | None:
        j = ex.journal
        while not task.done():
            changed = asyncio.create_task(ex.changed())
            await asyncio.wait({task, changed}, return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()
            if task.done() or not ex.quiescent() or not await ex.settle() or task.done():
                continue
            due = ex.earliest_due()
            key = run_key(ex.run_id, ex.generation, f"suspend{j.version}")
            if await ex.append(RunSuspended(generation=ex.generation, wake_at=due), key,
                               recheck=ex.quiescent):
                return Suspended(due)
        await ex.stop_branches()
        try:
            result = task.result()
        except RunCanceled:
            await self._canceled(ex)
            return None
        except RunAborted as exc:
            await self._failed(ex, exc.error)
            return None
        except Exception as exc:
            await self._failed(ex, error_info(exc))
            return None
        extra = [n for n in j.steps if n >= ex.next_no]
        if extra:
            await self._failed(ex, ErrorInfo(code="nondeterministic", message=(
                f"the handler returned before step {min(extra)} "
                f"({j.steps[min(extra)].name!r}) that the journal recorded")))
            return None
        try:
            size = len(json.dumps(result, separators=(",", ":")).encode())
        except (TypeError, ValueError) as exc:
            await self._failed(ex, ErrorInfo(code="invalid_result", message=str(exc)))
            return None
        if size > ex.config.max_result_bytes:
            await self._failed(ex, ErrorInfo(code="result_too_large", message=(
                f"workflow result is {size} bytes, limit {ex.config.max_result_bytes}")))
            return None
        await ex.append(WorkflowCompleted(generation=ex.generation, result=result),
                        run_key(ex.run_id, ex.generation, "completed"))
        return None

    async def _failed(self, ex: Execution, error: ErrorInfo) -> None:
        await ex.append(WorkflowFailed(generation=ex.generation, error=error),
                        run_key(ex.run_id, ex.generation, "failed"))

    async def _canceled(self, ex: Execution) -> None:
        await ex.append(WorkflowCanceled(generation=ex.generation,
                                         reason=ex.journal.cancel_requested or ""),
                        run_key(ex.run_id, ex.generation, "canceled"))

    async def _complete(self, ex: Execution) -> None:
        j = ex.journal
        st = j.started
        assert st is not None and j.outcome is not None
        status: Any = j.outcome
        if st.on_complete:
            handler = self.workflows.completion(st.on_complete)
            await handler(RunOutcome(
                run_id=j.run_id, name=st.name, status=status, result=j.result, error=j.error,
                context=st.context, key=run_key(j.run_id, j.generation, "on_complete")))
        if st.parent_run_id and st.parent_step is not None:
            pgen = st.parent_generation or 0
            await self.launcher.notify(st.parent_run_id, ChildCompleted(
                generation=pgen, step_no=st.parent_step, child_run_id=j.run_id,
                status=status, result=j.result, error=j.error),
                step_key(st.parent_run_id, pgen, st.parent_step, 1, f"child{j.generation}"))
        await ex.append(CompletionHandled(generation=j.generation, status=status, error=j.error),
                        run_key(j.run_id, j.generation, "completion"))

"""The ``step`` object a workflow handler gets: every durable thing it does goes here.

Steps are numbered in the order the handler *calls* these methods (before anything is
awaited), so ``asyncio.gather(step.run(a), step.run(b))`` numbers ``a`` then ``b`` on
every replay. Handlers must be deterministic apart from steps: no clocks, randomness or
I/O outside ``step.run``; await only step calls.

Guarantees
- ``run``: a journaled result is returned without running ``fn``; otherwise
  ``step_started`` is stored, then ``fn(args, key)`` runs, then ``step_completed`` (or
  ``step_failed``) is stored before the call returns. ``key`` (:class:`IdempotencyKey`)
  is the same on every attempt, so ``fn`` can make its side effect idempotent. A step
  whose worker died mid-attempt runs again (at least once).
- Timers (``sleep``, retry backoff, ``run_after``/``run_at``, ``await_event`` timeouts)
  are recorded due times; the run is redelivered at the due time (see ``worker``).
- ``patched(id)`` is True for runs that reach it with the new code (and records so),
  False for runs whose journal already holds another step at that position.
- ``custom(kind, ...)``: the extension point for other step kinds (e.g. model calls):
  same journal, retries and determinism check as ``run``, under its own ``kind``.

Failure modes: a step failed for good raises :class:`StepFailed` (``EventTimeout`` for
an event wait, ``ChildFailed`` for a child run) in the handler; a result above
``max_result_bytes`` or not JSON fails the step (``result_too_large`` / ``invalid_result``)
without retry; a changed step sequence fails the run (``nondeterministic``).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from nats.aio.client import Client as NATS

from events.envelope import utcnow
from events.ids import derived_id
from events.workflow_events import (
    ErrorInfo,
    EventAwaited,
    PatchMarked,
    SleepScheduled,
    StepCompleted,
    StepFailed,
    StepScheduled,
    StepStarted,
    step_key,
)
from scheduler.workflows import errors
from scheduler.workflows.agent_steps import AgentSteps
from scheduler.workflows.execution import Execution
from scheduler.workflows.journal import StepRecord, args_hash, check_step
from scheduler.workflows.retry import NO_RETRY, RetryPolicy

StartChild = Callable[[str, str, int | None, Any, int], Awaitable[None]]
"""``(child_run_id, name, version, args, step_no)``: start a child run (idempotent)."""


class IdempotencyKey(NamedTuple):
    """Given to every step function: the same for every attempt of the step."""

    run_id: str
    step_no: int

    def __str__(self) -> str:
        return f"{self.run_id}:{self.step_no}"


StepFn = Callable[[Any, IdempotencyKey], Any]


class Step(AgentSteps):
    """Agent steps (``generate_text``, ``generate_object``, ``create_thread``,
    ``save_messages``) come from :class:`AgentSteps` (``agent_steps``)."""

    def __init__(self, ex: Execution, version: int, start_child: StartChild) -> None:
        self._ex = ex
        self.version = version
        """The workflow version this run started with."""
        self._start_child = start_child

    @property
    def run_id(self) -> str:
        return self._ex.run_id

    @property
    def user_id(self) -> str | None:
        """The user the run acts for (None for a run the service started)."""
        started = self._ex.journal.started
        return started.user_id if started else None

    def _agent_env(self) -> tuple[NATS, str | None, int, float]:
        ex = self._ex
        return ex.store.nc, self.user_id, ex.generation, ex.config.agent_timeout

    # ------------------------------------------------------------ public API
    def run(self, fn: StepFn, args: Any = None, *, name: str | None = None,
            retry: RetryPolicy | None = None, run_after: float | None = None,
            run_at: datetime | None = None) -> Coroutine[Any, Any, Any]:
        if run_after is not None:
            run_at = utcnow() + timedelta(seconds=run_after)
        return self.custom("function", name or str(getattr(fn, "__name__", "step")), args, fn,
                           retry=retry, run_at=run_at)

    def custom(self, kind: str, name: str, args: Any, fn: StepFn, *,
               retry: RetryPolicy | None = None, run_at: datetime | None = None
               ) -> Coroutine[Any, Any, Any]:
        no = self._ex.number()
        return self._guard(self._run(no, kind, name, args, fn, retry or NO_RETRY, run_at))

    def sleep(self, seconds: float, *, name: str = "sleep") -> Coroutine[Any, Any, None]:
        no = self._ex.number()
        return self._guard(self._sleep(no, name, seconds))

    def await_event(self, name: str, *, timeout: float | None = None
                    ) -> Coroutine[Any, Any, Any]:
        no = self._ex.number()
        return self._guard(self._await_event(no, name, timeout))

    def run_workflow(self, name: str, args: Any = None, *, version: int | None = None
                     ) -> Coroutine[Any, Any, Any]:
        no = self._ex.number()
        return self._guard(self._child(no, name, version, args))

    def patched(self, patch_id: str) -> bool:
        ex = self._ex
        no = ex.next_no
        rec = ex.journal.steps.get(no)
        if rec is not None and not (rec.kind == "patch" and rec.name == patch_id):
            return False
        ex.number()
        ex.active -= 1
        if rec is None:
            ev = PatchMarked(generation=ex.generation, step_no=no, name=patch_id, kind="patch")
            ex.marks.append((ev, step_key(ex.run_id, ex.generation, no, 1, "patch")))
        return True

    # ------------------------------------------------------------ internals
    async def _guard(self, op: Coroutine[Any, Any, Any]) -> Any:
        self._ex.enter()
        try:
            return await op
        finally:
            self._ex.leave()

    def _opened(self, no: int, name: str, kind: str, args: Any) -> StepRecord | None:
        rec = check_step(self._ex.journal, no, name, kind, args_hash(args))
        if rec is not None and rec.status == "completed":
            return rec
        if rec is not None and rec.status == "failed":
            assert rec.error is not None
            cls = {"event": errors.EventTimeout, "workflow": errors.ChildFailed}.get(
                kind, errors.StepFailed)
            raise cls(no, name, rec.error)
        self._ex.check_cancel()
        return rec

    def _key(self, no: int, attempt: int, what: str) -> str:
        return step_key(self.run_id, self._ex.generation, no, attempt, what)

    async def _run(self, no: int, kind: str, name: str, args: Any, fn: StepFn,
                   retry: RetryPolicy, run_at: datetime | None) -> Any:
        ex = self._ex
        rec = self._opened(no, name, kind, args)
        if rec is not None and rec.status == "completed":
            return rec.result
        ah = args_hash(args)
        if rec is None and run_at is not None:
            await ex.open_step(StepScheduled(generation=ex.generation, step_no=no, name=name,
                                             kind=kind, args_hash=ah, run_at=run_at),
                               self._key(no, 1, "scheduled"))
        while True:
            rec = ex.journal.steps.get(no)
            if rec is not None and rec.not_before is not None and utcnow() < rec.not_before:
                await ex.wait(no, rec.not_before)
                continue
            ex.check_cancel()
            started, failures = (rec.started, rec.failures) if rec else (0, 0)
            attempt = started + 1
            if started - failures >= ex.config.max_crashes_per_step:
                crashed = ErrorInfo(code="step_crashed", message=(
                    f"{started - failures} attempts died with their worker"))
                return await self._fail(no, name, attempt - 1, crashed, retry, final=True)
            await ex.open_step(StepStarted(generation=ex.generation, step_no=no, name=name,
                                           kind=kind, args_hash=ah, attempt=attempt),
                               self._key(no, attempt, "started"))
            try:
                result = fn(args, IdempotencyKey(self.run_id, no))
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                await self._fail(no, name, attempt, errors.error_info(exc), retry)
                continue
            err = self._result_error(result)
            if err is not None:
                return await self._fail(no, name, attempt, err, retry, final=True)
            await ex.append(StepCompleted(generation=ex.generation, step_no=no,
                                          attempt=attempt, result=result),
                            self._key(no, attempt, "completed"))
            return result

    def _result_error(self, result: Any) -> ErrorInfo | None:
        try:
            size = len(json.dumps(result, separators=(",", ":")).encode())
        except (TypeError, ValueError) as exc:
            return ErrorInfo(code="invalid_result", message=f"result is not JSON: {exc}")
        limit = self._ex.config.max_result_bytes
        if size > limit:
            return ErrorInfo(code="result_too_large",
                             message=f"step result is {size} bytes, the limit is {limit}")
        return None

    async def _fail(self, no: int, name: str, attempt: int, err: ErrorInfo,
                    retry: RetryPolicy, *, final: bool = False) -> None:
        ex = self._ex
        rec = ex.journal.steps.get(no)
        failures = (rec.failures if rec else 0) + 1
        will_retry = not final and retry.will_retry(failures)
        retry_at = utcnow() + timedelta(seconds=retry.backoff(failures)) if will_retry else None
        await ex.append(StepFailed(generation=ex.generation, step_no=no, attempt=max(1, attempt),
                                   error=err, will_retry=will_retry, retry_at=retry_at),
                        self._key(no, max(1, attempt), "failed"))
        if not will_retry:
            raise errors.StepFailed(no, name, err)

    async def _sleep(self, no: int, name: str, seconds: float) -> None:
        ex = self._ex
        rec = self._opened(no, name, "sleep", seconds)
        if rec is not None and rec.status == "completed":
            return
        if rec is None:
            await ex.open_step(SleepScheduled(
                generation=ex.generation, step_no=no, name=name, kind="sleep",
                args_hash=args_hash(seconds), wake_at=utcnow() + timedelta(seconds=seconds)),
                self._key(no, 1, "sleep"))
            rec = ex.journal.steps[no]
        assert rec.not_before is not None
        while utcnow() < rec.not_before:
            await ex.wait(no, rec.not_before)
        await ex.append(StepCompleted(generation=ex.generation, step_no=no),
                        self._key(no, 1, "completed"))

    async def _await_event(self, no: int, name: str, timeout: float | None) -> Any:
        ex = self._ex
        rec = self._opened(no, name, "event", None)
        if rec is not None and rec.status == "completed":
            return rec.result
        while True:
            # The step is opened first even when its event came earlier: a completion
            # without an opening event would not be in the journal on replay.
            seq = ex.next_event(name) if no in ex.journal.steps else None
            if seq is not None:
                break
            if no not in ex.journal.steps:
                due = utcnow() + timedelta(seconds=timeout) if timeout is not None else None
                await ex.open_step(EventAwaited(generation=ex.generation, step_no=no, name=name,
                                             kind="event", args_hash=args_hash(None),
                                             event_name=name, timeout_at=due),
                                self._key(no, 1, "awaited"))
                continue
            due = ex.journal.steps[no].not_before
            if due is not None and utcnow() >= due:
                err = ErrorInfo(code="event_timeout", message=f"no event {name!r} by {due}")
                await ex.append(StepFailed(generation=ex.generation, step_no=no, error=err),
                                self._key(no, 1, "failed"))
                raise errors.EventTimeout(no, name, err)
            await ex.wait(no, due, event_name=name)
        ex.claimed.add(seq)
        value = next(e.value for s, e in ex.journal.received if s == seq)
        await ex.append(StepCompleted(generation=ex.generation, step_no=no, result=value,
                                      event_seq=seq), self._key(no, 1, "completed"))
        ex.claimed.discard(seq)
        return value

    async def _child(self, no: int, name: str, version: int | None, args: Any) -> Any:
        ex = self._ex
        rec = self._opened(no, name, "workflow", args)
        if rec is not None and rec.status == "completed":
            return rec.result
        child_id = (rec.child_run_id if rec and rec.child_run_id else
                    "c" + derived_id(self.run_id, str(ex.generation), str(no)))
        if rec is None:
            await ex.open_step(StepStarted(generation=ex.generation, step_no=no, name=name,
                                           kind="workflow", args_hash=args_hash(args),
                                        child_run_id=child_id), self._key(no, 1, "started"))
        await self._start_child(child_id, name, version, args, no)
        while not ex.journal.steps[no].done:
            await ex.wait(no, None)
        rec = ex.journal.steps[no]
        if rec.status == "failed":
            raise errors.ChildFailed(no, name, rec.error or ErrorInfo(code="child_failed",
                                                                     message="child failed"))
        return rec.result

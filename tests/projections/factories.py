"""Event builders for projection tests (plain functions, no I/O)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from events import (
    Aggregate,
    EventStore,
    MessageEmbedded,
    MessageFinalized,
    MessageSaved,
    MessageStatusChanged,
    TextPart,
    ThreadCreated,
    ThreadMetadataUpdated,
    ToolApprovalDecided,
    ToolApprovalRequested,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallPart,
    ToolCallRequested,
    Usage,
    UsageRecorded,
    new_id,
)
from events.canvas_events import CanvasCreated, CanvasEdited
from events.invoice_events import (
    InvoiceFailed,
    InvoiceIssued,
    InvoicePaid,
    invoice_aggregate,
    invoice_id,
)
from events.workflow_events import (
    ChildCompleted,
    ErrorInfo,
    EventAwaited,
    PatchMarked,
    RunSuspended,
    SleepScheduled,
    StepCompleted,
    StepFailed,
    StepScheduled,
    StepStarted,
    WorkflowCanceled,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowRestarted,
    WorkflowStarted,
    run_aggregate,
)
from projections.projector import Projector


async def create_thread(store: EventStore, user: str, thread: str | None = None,
                        title: str = "t") -> tuple[str, int]:
    thread = thread or new_id()
    r = await store.append(Aggregate.thread(thread),
                           [ThreadCreated(thread_id=thread, user_id=user, title=title)],
                           user_id=user)
    return thread, r.last_seq


async def save_message(store: EventStore, user: str, thread: str, order: int, *,
                       step: int = 0, role: str = "user", text: str = "hi",
                       status: str = "success", message_id: str | None = None,
                       tool: bool = False) -> tuple[str, int]:
    mid = message_id or new_id()
    content: list[Any] = [TextPart(text=text)]
    if tool:
        content.append(ToolCallPart(tool_call_id="c1", tool_name="lookup", args={"q": 1}))
    ev = MessageSaved(message_id=mid, thread_id=thread, order=order, step_order=step,
                      role=role, content=content, status=status)  # type: ignore[arg-type]
    r = await store.append(Aggregate.thread(thread), [ev], user_id=user)
    return mid, r.last_seq


def every_event_type(user: str, thread: str, mid: str) -> list[tuple[Aggregate, Any]]:
    """One event of every catalogue type, for one thread, in a valid order."""
    t = Aggregate.thread(thread)
    usage = Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15, reasoning_tokens=1,
                  cached_input_tokens=2, cache_write_tokens=3)
    return [
        (t, ThreadCreated(thread_id=thread, user_id=user, title="first", metadata={"a": 1})),
        (t, ThreadMetadataUpdated(thread_id=thread, title="renamed", summary="sum",
                                  status="archived")),
        (t, MessageSaved(message_id=mid, thread_id=thread, order=0, role="assistant",
                         content=[TextPart(text="")], status="pending", agent_name="ag",
                         model="m1", provider="p1")),
        (t, MessageStatusChanged(message_id=mid, thread_id=thread, status="pending")),
        (t, ToolApprovalRequested(thread_id=thread, message_id=mid, tool_call_id="c2",
                                  tool_name="rm", args={"path": "/"})),
        (t, ToolApprovalDecided(thread_id=thread, tool_call_id="c2", approved=False,
                                decided_by=user, reason="no")),
        (t, ToolCallRequested(thread_id=thread, message_id=mid, tool_call_id="c1",
                              tool_name="lookup", args={"q": "x"})),
        (t, ToolCallCompleted(thread_id=thread, message_id=mid, tool_call_id="c1",
                              tool_name="lookup", result={"answer": 42})),
        (t, ToolCallRequested(thread_id=thread, message_id=mid, tool_call_id="c3",
                              tool_name="boom")),
        (t, ToolCallFailed(thread_id=thread, message_id=mid, tool_call_id="c3",
                           tool_name="boom", error="exploded")),
        (t, MessageFinalized(message_id=mid, thread_id=thread, status="success",
                             content=[TextPart(text="hello "), TextPart(text="world")],
                             usage=usage, finish_reason="stop")),
        (t, MessageEmbedded(message_id=mid, thread_id=thread, model="emb", dimensions=3,
                            vector=[0.6, 0.8, 0.0])),
        (Aggregate("usage", user),
         UsageRecorded(call_id=new_id(), user_id=user, thread_id=thread, agent_name="ag",
                       model="m1", provider="p1", usage=usage, cost=0.25,
                       at=datetime(2024, 3, 31, 23, 30, tzinfo=UTC))),
        (Aggregate("canvas", "cv" + thread[:20]),
         CanvasCreated(canvas_id="cv" + thread[:20], thread_id=thread, user_id=user,
                       title="board", document={"elements": {"a": {"type": "text"}}})),
        (Aggregate("canvas", "cv" + thread[:20]),
         CanvasEdited(canvas_id="cv" + thread[:20], thread_id=thread, base_version=0,
                      version=1, ops=[{"op": "add", "path": "/elements/a/text",
                                       "value": "hi"}],
                      touched=["a"], summary="set a's text", author=user)),
        (invoice_aggregate(user, "2024-03"),
         InvoiceIssued(invoice_id=invoice_id(user, "2024-03"), user_id=user,
                       period="2024-03", amount=0.25,
                       issued_at=datetime(2024, 4, 2, tzinfo=UTC))),
        (invoice_aggregate(user, "2024-03"),
         InvoicePaid(invoice_id=invoice_id(user, "2024-03"),
                     at=datetime(2024, 4, 3, tzinfo=UTC))),
        (invoice_aggregate(user, "2024-04"),
         InvoiceIssued(invoice_id=invoice_id(user, "2024-04"), user_id=user,
                       period="2024-04", amount=0.0,
                       issued_at=datetime(2024, 5, 2, tzinfo=UTC))),
        (invoice_aggregate(user, "2024-04"),
         InvoiceFailed(invoice_id=invoice_id(user, "2024-04"), reason="card declined",
                       at=datetime(2024, 5, 3, tzinfo=UTC))),
        *workflow_events(user, "wf" + thread[:20]),
    ]


def workflow_events(user: str, run: str) -> list[tuple[Aggregate, Any]]:
    """One event of every workflow type the views handle, for runs of ``user``."""
    r, c, f = run_aggregate(run), run_aggregate(run + "c"), run_aggregate(run + "f")
    at = datetime(2024, 3, 1, tzinfo=UTC)
    err = ErrorInfo(code="boom", message="it broke")
    opened = {"name": "s", "kind": "run"}
    return [
        (r, WorkflowStarted(run_id=run, name="flow", user_id=user)),
        (r, StepScheduled(step_no=1, run_at=at, **opened)),
        (r, StepStarted(step_no=1, **opened)),
        (r, StepFailed(step_no=1, error=err, will_retry=True, retry_at=at)),
        (r, StepStarted(step_no=1, attempt=2, **opened)),
        (r, StepCompleted(step_no=1, attempt=2, result=1)),
        (r, SleepScheduled(step_no=2, wake_at=at, name="nap", kind="sleep")),
        (r, RunSuspended(wake_at=at)),
        (r, EventAwaited(step_no=3, event_name="ok", name="ok", kind="event")),
        (r, PatchMarked(step_no=4, name="p1", kind="patch")),
        (r, ChildCompleted(step_no=5, child_run_id=run + "c", status="completed")),
        (r, WorkflowRestarted(generation=1, from_step=2)),
        (r, WorkflowCompleted(generation=1)),
        (c, WorkflowStarted(run_id=run + "c", name="child", user_id=user, parent_run_id=run)),
        (c, WorkflowCanceled(reason="enough")),
        (f, WorkflowStarted(run_id=run + "f", name="flow", user_id=user)),
        (f, WorkflowFailed(error=err)),
    ]


@contextlib.asynccontextmanager
async def running_projector(p: Projector) -> AsyncIterator[Projector]:
    """``p`` (opened) running in the background; stopped (bounded) and closed after."""
    task = asyncio.create_task(p.run())
    try:
        yield p
    finally:
        p.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        await p.close()


def message_ids(p: Projector, thread: str) -> set[str]:
    """The ids of ``thread``'s rows in the running projector's ``messages`` view."""
    with p.reading() as cur:
        return {r[0] for r in cur.execute(
            "SELECT message_id FROM messages WHERE thread_id = ?", [thread]).fetchall()}

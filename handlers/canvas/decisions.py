"""Pure decisions of the canvas commands: (canvas state, command) -> event and result.

No I/O. A refused command raises a ``ThreadlogError`` subclass and appends nothing:
``not_found`` (no such canvas), ``already_exists``, ``conflict`` (stale base version,
``details.current_version``), the patch errors of ``handlers.canvas.errors``,
``schema_violation``, ``payload_too_large``, ``revert_conflict``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from events import ConcurrencyError, NotFound, PayloadTooLarge, ThreadlogError, derived_id
from events.canvas_events import CanvasCreated, CanvasEdited
from events.catalogue import Event
from handlers.canvas.commands import CreateCanvas, EditCanvas, RevertCanvasEdit
from handlers.canvas.errors import PatchTestFailed, RevertConflict
from handlers.canvas.patching import PatchOutcome, apply_patch, check_ops, inverse_ops
from handlers.canvas.schema import CanvasSchema, element_size
from handlers.canvas.state import CanvasState
from handlers.canvas.summaries import summarize


@dataclass
class CanvasDecision:
    """One event and the reply's result (a ``Decided`` for the aggregate runner);
    ``outcome`` is the computed patch, folded without re-applying the ops."""

    event: CanvasCreated | CanvasEdited
    result: dict[str, Any]
    outcome: PatchOutcome | None = None
    after: Callable[[], Awaitable[None]] | None = None

    @property
    def events(self) -> list[Event]:
        return [self.event]


def canvas_id_for(cmd: CreateCanvas) -> str:
    return cmd.canvas_id or derived_id("canvas", cmd.user_id, cmd.command_id)


def require_canvas(state: CanvasState) -> None:
    if not state.exists:
        raise NotFound(f"canvas {state.canvas_id!r} not found",
                       details={"canvas_id": state.canvas_id})


def create_canvas(state: CanvasState, cmd: CreateCanvas, schema: CanvasSchema
                  ) -> CanvasDecision:
    if state.exists:
        raise ThreadlogError(f"canvas {state.canvas_id!r} already exists",
                             code="already_exists", details={"canvas_id": state.canvas_id})
    document = {"elements": {}, **cmd.document}
    size = element_size(document)
    if size > schema.max_document_bytes:
        raise PayloadTooLarge(f"the document is {size} bytes; the limit is "
                              f"{schema.max_document_bytes}",
                              details={"size": size, "limit": schema.max_document_bytes})
    schema.validate_document(document)
    assert state.thread_id is None or state.thread_id == cmd.thread_id
    ev = CanvasCreated(canvas_id=state.canvas_id, thread_id=cmd.thread_id,
                       user_id=cmd.user_id, title=cmd.title, document=document)
    return CanvasDecision(ev, created_result(state.canvas_id, cmd.thread_id))


def created_result(canvas_id: str, thread_id: str) -> dict[str, Any]:
    return {"canvas_id": canvas_id, "thread_id": thread_id, "version": 0}


def edit_canvas(state: CanvasState, cmd: EditCanvas, schema: CanvasSchema) -> CanvasDecision:
    require_canvas(state)
    check_base(state, cmd.base_version)
    return _edit(state, cmd.ops, schema, summary=cmd.summary, user_id=cmd.user_id,
                 agent_name=cmd.agent_name, message_id=cmd.message_id, reverts=None)


def revert_edit(state: CanvasState, cmd: RevertCanvasEdit, schema: CanvasSchema
                ) -> CanvasDecision:
    require_canvas(state)
    if cmd.base_version is not None:
        check_base(state, cmd.base_version)
    rec = state.index.get(cmd.version)
    if rec is None:
        raise NotFound(f"canvas {state.canvas_id!r} has no edit {cmd.version}",
                       details={"canvas_id": state.canvas_id, "version": cmd.version,
                                "current_version": state.version})
    ops = inverse_ops(rec.snippet.get("before", {}), rec.snippet.get("after", {}))
    if not ops:
        raise RevertConflict(f"edit {cmd.version} changed no element: nothing to revert",
                             details={"version": cmd.version})
    try:
        summary = cmd.summary or f"reverted edit {rec.version}: {rec.summary}"[:300]
        return _edit(state, ops, schema, summary=summary, user_id=cmd.user_id,
                     agent_name=cmd.agent_name, message_id=cmd.message_id, reverts=rec.version)
    except PatchTestFailed as exc:
        raise RevertConflict(f"edit {cmd.version} cannot be reverted: later edits changed "
                             f"what it changed ({exc.details.get('path')})",
                             details={"version": cmd.version, **exc.details}) from None


def check_base(state: CanvasState, base_version: int) -> None:
    if base_version != state.version:
        raise ConcurrencyError(
            f"canvas {state.canvas_id!r} is at version {state.version}, not {base_version}",
            current_version=state.version,
            details={"canvas_id": state.canvas_id, "base_version": base_version})


def _edit(state: CanvasState, raw_ops: list[dict[str, Any]], schema: CanvasSchema, *,
          summary: str | None, user_id: str, agent_name: str | None,
          message_id: str | None, reverts: int | None) -> CanvasDecision:
    if len(raw_ops) > schema.max_patch_ops:
        raise PayloadTooLarge(f"the patch has {len(raw_ops)} ops; the limit is "
                              f"{schema.max_patch_ops}",
                              details={"ops": len(raw_ops), "limit": schema.max_patch_ops})
    patch_bytes = len(json.dumps(raw_ops, separators=(",", ":"), default=str))
    if patch_bytes > schema.max_patch_bytes:
        raise PayloadTooLarge(f"the patch is {patch_bytes} bytes; the limit is "
                              f"{schema.max_patch_bytes}",
                              details={"size": patch_bytes, "limit": schema.max_patch_bytes})
    ops = check_ops(raw_ops)
    outcome = apply_patch(state.document, ops)
    _validate(state, outcome, schema)
    version = state.version + 1
    ev = CanvasEdited(
        canvas_id=state.canvas_id, thread_id=state.thread_id or "", base_version=state.version,
        version=version, ops=ops, touched=outcome.touched,
        summary=summary or summarize(outcome.touched, outcome.before, outcome.after),
        snippet={"before": outcome.before, "after": outcome.after},
        author=agent_name or user_id, author_kind="agent" if agent_name else "user",
        message_id=message_id, reverts=reverts)
    return CanvasDecision(ev, edit_result(ev), outcome)


def edit_result(ev: CanvasEdited) -> dict[str, Any]:
    return {"canvas_id": ev.canvas_id, "version": ev.version, "base_version": ev.base_version,
            "touched": list(ev.touched), "summary": ev.summary, "reverts": ev.reverts}


def _validate(state: CanvasState, outcome: PatchOutcome, schema: CanvasSchema) -> None:
    doc = outcome.document
    if outcome.structural or schema.validate_whole_document:
        schema.validate_document(doc)
        size = element_size(doc)
    else:
        size = state.document_bytes
        for eid in outcome.touched:
            size -= state.sizes.get(eid, 0)
            el = outcome.after[eid]
            if el is not None:
                schema.validate_element(eid, el)
                size += element_size(el)
        if len(doc["elements"]) > schema.max_elements:
            raise PayloadTooLarge(f"a canvas holds at most {schema.max_elements} elements",
                                  details={"limit": schema.max_elements})
    if size > schema.max_document_bytes:
        raise PayloadTooLarge(f"the edited document would be {size} bytes; the limit is "
                              f"{schema.max_document_bytes}",
                              details={"size": size, "limit": schema.max_document_bytes})

"""``CanvasService``: run canvas commands and queries against the canvas state.

Guarantees
- Ownership: every command and query checks that the canvas's thread exists, is not
  deleted and belongs to ``user_id`` (the thread state cache; ``not_found`` /
  ``forbidden``).
- A refused command appends nothing (see ``handlers.canvas.decisions``).
- An edit is appended with ``expected`` = the canvas's last stream sequence. If another
  process appended first, the state catches up and the command is decided again, so a
  ``base_version`` that became stale is a ``conflict`` carrying the current version.
- Idempotency: a re-sent command id returns the first reply and appends nothing (the
  command log, else the command ids folded from the canvas's events, else the store's
  ``Nats-Msg-Id`` dedupe).
- In-process, decisions on one canvas are serialised by a lock; different canvases and
  the thread's own commands do not wait for each other.
"""

from __future__ import annotations

from events import EventStore, NotFound
from events.canvas_events import CanvasEdited
from events.replies import Reply
from events.store import EventRef
from handlers.aggregate_runner import AggregateKind, AggregateRunner, Decided, Decision
from handlers.canvas.commands import (
    CanvasHistory,
    CreateCanvas,
    EditCanvas,
    GetCanvas,
    RevertCanvasEdit,
)
from handlers.canvas.decisions import (
    CanvasDecision,
    canvas_id_for,
    create_canvas,
    created_result,
    edit_canvas,
    require_canvas,
    revert_edit,
)
from handlers.canvas.directory import CanvasDirectory
from handlers.canvas.schema import CanvasSchema
from handlers.canvas.state import CanvasState, CanvasStateCache, canvas_aggregate
from handlers.command_log import CommandLog
from handlers.threads.decisions import require_owned
from handlers.threads.state import ThreadStateCache


class CanvasService:
    def __init__(self, store: EventStore, threads: ThreadStateCache,
                 command_log: CommandLog | None = None, *,
                 schema: CanvasSchema | None = None, max_attempts: int = 10,
                 cache_capacity: int = 1_000) -> None:
        self.store = store
        self.threads = threads
        self.command_log = command_log
        self.schema = schema or CanvasSchema()
        self.canvases = CanvasStateCache(store, cache_capacity)
        self.directory = CanvasDirectory(store)
        self.runner: AggregateRunner[CanvasState, Decided] = AggregateRunner(
            store, self.canvases, command_log,
            AggregateKind("canvas", applied=_applied_at, advance=self._advance),
            max_attempts=max_attempts)

    # ------------------------------------------------------------------ commands
    async def create(self, cmd: CreateCanvas) -> Reply:
        return await self.runner.run(
            cmd, canvas_id_for(cmd), lambda st: create_canvas(st, cmd, self.schema),
            lambda st: _replayed(st, cmd.command_id),
            authorize=lambda st: self._check_owner(st, cmd.user_id, cmd.thread_id))

    async def edit(self, cmd: EditCanvas) -> Reply:
        return await self.runner.run(
            cmd, cmd.canvas_id, lambda st: edit_canvas(st, cmd, self.schema),
            lambda st: _replayed(st, cmd.command_id),
            authorize=lambda st: self._check_owner(st, cmd.user_id))

    async def revert(self, cmd: RevertCanvasEdit) -> Reply:
        return await self.runner.run(
            cmd, cmd.canvas_id, lambda st: revert_edit(st, cmd, self.schema),
            lambda st: _replayed(st, cmd.command_id),
            authorize=lambda st: self._check_owner(st, cmd.user_id))

    def _advance(self, state: CanvasState, decision: Decided, seq: int,
                 command_id: str) -> None:
        assert isinstance(decision, CanvasDecision)
        state.apply(decision.event, seq, command_id, outcome=decision.outcome)
        if state.thread_id is not None and not isinstance(decision.event, CanvasEdited):
            self.directory.add(state.thread_id, state.canvas_id)

    async def _check_owner(self, state: CanvasState, user_id: str,
                           thread_id: str | None = None) -> None:
        tid = thread_id or state.thread_id
        if tid is None:
            require_canvas(state)
            return
        require_owned(await self.threads.get(tid), user_id)

    # ------------------------------------------------------------------ queries
    async def state_for(self, user_id: str, canvas_id: str) -> CanvasState:
        """The canvas's state after checking the user owns its thread (``not_found``,
        ``forbidden``)."""
        state = await self.canvases.refresh(canvas_id)
        require_canvas(state)
        await self._check_owner(state, user_id)
        return state

    async def get(self, q: GetCanvas) -> Reply:
        state = await self.state_for(q.user_id, q.canvas_id)
        version = state.version if q.version is None else q.version
        if version > state.version:
            raise NotFound(f"canvas {q.canvas_id!r} has no version {version}",
                           details={"canvas_id": q.canvas_id, "version": version,
                                    "current_version": state.version})
        doc = state.document_at(version)
        missing: list[str] = []
        if q.element_ids is not None:
            elements = doc.get("elements", {})
            missing = [e for e in q.element_ids if e not in elements]
            doc = {**doc, "elements": {e: elements[e] for e in q.element_ids if e in elements}}
        return Reply.success({"canvas_id": state.canvas_id, "thread_id": state.thread_id,
                              "title": state.title, "version": version,
                              "current_version": state.version, "document": doc,
                              "missing": missing}, state.seq)

    async def history(self, q: CanvasHistory) -> Reply:
        state = await self.state_for(q.user_id, q.canvas_id)
        page, next_cursor = state.index.page(before=q.cursor, limit=q.limit,
                                             element_id=q.element_id, author=q.author)
        edits = []
        for rec in page:
            item = rec.as_dict()
            if not q.include_snippets:
                item.pop("snippet")
            edits.append(item)
        return Reply.success({"canvas_id": state.canvas_id, "version": state.version,
                              "edits": edits, "next_cursor": next_cursor}, state.seq)

    # ------------------------------------------------------------------ deletion
    async def purge_thread(self, thread_id: str) -> list[str]:
        """Erase the canvases of a deleted thread from the log (down to the bytes on
        disk: :meth:`EventStore.erase`), with the command-log replies of the commands
        that produced their events, and forget them in memory.

        Call after the thread's ``thread_deleted`` is appended; idempotent and
        retry-safe: each canvas's ``canvas_created`` (by which the directory finds it)
        is erased after its other events and its replies, so a crash mid-way leaves the
        canvas findable by the next run. Returns the canvas ids erased."""
        log = self.command_log

        async def erase_replies(refs: list[EventRef]) -> None:
            if log is not None:
                await log.erase_replies(self.store, refs)

        ids = await self.directory.canvases_of(thread_id)
        for cid in ids:
            await self.store.erase(canvas_aggregate(cid), last_types={"canvas_created"},
                                   before=erase_replies)
            self.canvases.forget(cid)
        self.directory.forget_thread(thread_id)
        return ids


def _applied_at(state: CanvasState, command_id: str) -> int | None:
    """The sequence of the command's event if it is folded into the canvas."""
    done = state.commands.get(command_id)
    return None if done is None else done[1]


def _replayed(state: CanvasState, command_id: str) -> Decision:
    """The first reply's result of a command already applied to the canvas."""
    version, _ = state.commands[command_id]
    if version == 0:
        return Decision([], created_result(state.canvas_id, state.thread_id or ""))
    rec = state.index.records[version - 1]
    return Decision([], {"canvas_id": state.canvas_id, "version": rec.version,
                         "base_version": rec.base_version, "touched": list(rec.touched),
                         "summary": rec.summary, "reverts": rec.reverts})


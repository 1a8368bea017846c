"""The write-side state of a thread, folded from its events, and a cache of it.

The command handlers decide on this state, then append with ``expected=state.version``:
the event store rejects the append if the state was stale, and the cache refreshes
incrementally (only events after its version), so deciding costs O(new events), not
O(thread length).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from events import (
    Aggregate,
    EventStore,
    MessageEmbedded,
    MessageFinalized,
    MessageSaved,
    MessageStatusChanged,
    RecordedEvent,
    ThreadCreated,
    ThreadDeleted,
    ThreadMetadataUpdated,
    ToolApprovalDecided,
    ToolApprovalRequested,
    ToolCallCompleted,
    ToolCallFailed,
)
from events.catalogue import Event
from events.content import ContentPart
from handlers.state_cache import AggregateStateCache

MAX_REMEMBERED_COMMANDS = 1_000
RECENT_CAPACITY = 512
"""Messages whose content the state keeps: the context window's upper bound."""


@dataclass
class MessageInfo:
    order: int
    step_order: int
    role: str
    status: str


@dataclass
class RecentMessage:
    """Content of one of the thread's most recent messages (for the model's context)."""

    message_id: str
    order: int
    step_order: int
    role: str
    status: str
    content: list[ContentPart]
    chat: list[dict[str, Any]] | None = field(default=None, repr=False, compare=False)
    """Its chat messages, cached by the context builder (``handlers.agents.context``);
    reset whenever ``content`` changes."""


@dataclass
class PendingApproval:
    tool_call_id: str
    message_id: str
    tool_name: str
    args: dict[str, Any]
    approved: bool | None = None
    reason: str | None = None


@dataclass
class ThreadState:
    thread_id: str
    version: int = 0
    exists: bool = False
    deleted: bool = False
    user_id: str | None = None
    title: str | None = None
    summary: str | None = None
    status: str = "active"
    metadata: dict[str, Any] = field(default_factory=dict)
    last_order: int = -1
    messages: dict[str, MessageInfo] = field(default_factory=dict)
    max_step: dict[int, int] = field(default_factory=dict)
    recent: OrderedDict[str, RecentMessage] = field(default_factory=OrderedDict)
    recent_in_order: bool = True
    """Whether ``recent`` is in ascending (order, step_order): true unless a message was
    saved behind a later one (a step answering an old prompt), which makes the context
    sort instead of reading the tail."""
    approvals: dict[str, PendingApproval] = field(default_factory=dict)
    """Tool calls awaiting (or just given) a human decision, by tool call id."""
    commands: OrderedDict[str, list[Event]] = field(default_factory=OrderedDict)
    """Events of the most recent commands (by command id), to answer a re-sent command
    (``message_embedded`` left out: its vector is large and no reply needs it)."""

    @property
    def aggregate(self) -> Aggregate:
        return Aggregate.thread(self.thread_id)

    def apply(self, event: Event, seq: int | None = None, command_id: str | None = None) -> None:
        """Fold one event (pure). ``seq`` (if given) becomes the version."""
        if command_id is not None:
            remembered = self.commands.setdefault(command_id, [])
            if not isinstance(event, MessageEmbedded):  # vectors: large, never replayed
                remembered.append(event)
            self.commands.move_to_end(command_id)
            while len(self.commands) > MAX_REMEMBERED_COMMANDS:
                self.commands.popitem(last=False)
        if isinstance(event, ThreadCreated):
            self.exists = True
            self.user_id = event.user_id
            self.title, self.summary, self.metadata = event.title, event.summary, event.metadata
        elif isinstance(event, ThreadMetadataUpdated):
            if event.title is not None:
                self.title = event.title
            if event.summary is not None:
                self.summary = event.summary
            if event.status is not None:
                self.status = event.status
            if event.metadata is not None:
                self.metadata = event.metadata
        elif isinstance(event, ThreadDeleted):
            self.deleted = True
            self.messages.clear()
            self.recent.clear()
            self.recent_in_order = True
        elif isinstance(event, MessageSaved):
            self.messages[event.message_id] = MessageInfo(
                event.order, event.step_order, event.role, event.status)
            self.last_order = max(self.last_order, event.order)
            self.max_step[event.order] = max(self.max_step.get(event.order, 0), event.step_order)
            key = (event.order, event.step_order)
            if self.recent and (event.message_id in self.recent or key < (
                    (last := next(reversed(self.recent.values()))).order, last.step_order)):
                self.recent_in_order = False
            self.recent[event.message_id] = RecentMessage(
                event.message_id, event.order, event.step_order, event.role, event.status,
                list(event.content))
            while len(self.recent) > RECENT_CAPACITY:
                self.recent.popitem(last=False)
        elif isinstance(event, ToolApprovalRequested):
            self.approvals[event.tool_call_id] = PendingApproval(
                event.tool_call_id, event.message_id, event.tool_name, dict(event.args))
        elif isinstance(event, ToolApprovalDecided):
            pa = self.approvals.get(event.tool_call_id)
            if pa is not None:
                pa.approved, pa.reason = event.approved, event.reason
        elif isinstance(event, ToolCallCompleted | ToolCallFailed):
            self.approvals.pop(event.tool_call_id, None)
        elif isinstance(event, MessageStatusChanged | MessageFinalized):
            info = self.messages.get(event.message_id)
            if info is not None:
                info.status = event.status
            rec = self.recent.get(event.message_id)
            if rec is not None:
                rec.status = event.status
                if isinstance(event, MessageFinalized) and event.content:
                    rec.content, rec.chat = list(event.content), None
        if seq is not None:
            self.version = seq

    def apply_recorded(self, events: list[RecordedEvent]) -> None:
        for rec in events:
            self.apply(rec.event, rec.seq, rec.envelope.causation_id)


class ThreadStateCache(AggregateStateCache[ThreadState]):
    """Thread states by thread id (see :class:`AggregateStateCache`)."""

    def __init__(self, store: EventStore, capacity: int = 10_000) -> None:
        super().__init__(store, ThreadState, lambda st: st.version, capacity)

    def advance(self, state: ThreadState, events: list[Event], last_seq: int,
                command_id: str | None) -> None:
        """Fold our own just-appended events (sequences are consecutive up to last_seq);
        those a lock-free catch-up already folded are skipped."""
        first = last_seq - len(events) + 1
        for i, ev in enumerate(events):
            if first + i > state.version:
                state.apply(ev, first + i, command_id)

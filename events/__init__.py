"""threadlog events: the event catalogue, envelope and the JetStream event store.

This package depends on nothing else of threadlog's.
"""

from events import (  # noqa: F401  (registers the catalogue)
    canvas_events,
    invoice_events,
    thread_events,
    usage_events,
    work_events,
    workflow_events,
)
from events.catalogue import CATALOGUE, Catalogue, Event, register, upcaster
from events.content import ContentPart, TextPart, ToolCallPart, ToolResultPart, Usage, text_of
from events.envelope import Aggregate, EventEnvelope, RecordedEvent
from events.errors import (
    ConcurrencyError,
    Forbidden,
    InvalidId,
    InvalidTransition,
    NotFound,
    PayloadTooLarge,
    ThreadlogError,
    Timeout,
    Unavailable,
    UnknownEventType,
    ValidationFailed,
)
from events.ids import SafeId, check_token, derived_id, new_id
from events.store import AppendResult, EventStore, Expected
from events.stream_setup import EventStreamSpec, ensure_event_stream
from events.thread_events import (
    MessageEmbedded,
    MessageFinalized,
    MessageSaved,
    MessageStatusChanged,
    ThreadCreated,
    ThreadDeleted,
    ThreadMetadataUpdated,
    ToolApprovalDecided,
    ToolApprovalRequested,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
)
from events.usage_events import UsageRecorded

__all__ = [
    "CATALOGUE", "Aggregate", "AppendResult", "Catalogue", "ConcurrencyError", "ContentPart",
    "Event", "EventEnvelope", "EventStore", "EventStreamSpec", "Expected", "Forbidden",
    "InvalidId", "InvalidTransition", "MessageEmbedded", "MessageFinalized", "MessageSaved",
    "MessageStatusChanged", "NotFound", "PayloadTooLarge", "RecordedEvent", "SafeId",
    "TextPart", "ThreadCreated", "ThreadDeleted", "ThreadMetadataUpdated", "ThreadlogError",
    "Timeout", "ToolApprovalDecided", "ToolApprovalRequested", "ToolCallCompleted",
    "ToolCallFailed", "ToolCallPart", "ToolCallRequested", "ToolResultPart", "Unavailable",
    "UnknownEventType", "Usage", "UsageRecorded", "ValidationFailed", "check_token",
    "derived_id", "ensure_event_stream", "new_id", "register", "text_of",
    "upcaster",
]

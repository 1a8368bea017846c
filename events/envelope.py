"""The envelope every stored event travels in, and the recorded form read back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from events.catalogue import CATALOGUE, Event
from events.ids import check_token, new_id

STREAM_PREFIX = "events"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Aggregate:
    """One aggregate: all its events live under ``events.<type>.<id>.<event_type>``."""

    type: str
    id: str

    def __post_init__(self) -> None:
        check_token(self.type, what="aggregate_type")
        check_token(self.id, what=f"{self.type}_id")

    @property
    def prefix(self) -> str:
        return f"{STREAM_PREFIX}.{self.type}.{self.id}"

    @property
    def filter(self) -> str:
        """The wildcard subject matching every event of this aggregate."""
        return f"{self.prefix}.>"

    def subject(self, event_type: str) -> str:
        return f"{self.prefix}.{event_type}"

    @classmethod
    def thread(cls, thread_id: str) -> Aggregate:
        return cls("thread", thread_id)


class EventEnvelope(BaseModel):
    """Metadata around a payload. ``causation_id`` is the command id that caused the event."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(default_factory=new_id)
    type: str
    version: int = 1
    occurred_at: datetime = Field(default_factory=utcnow)
    aggregate_type: str
    aggregate_id: str
    user_id: str | None = None
    causation_id: str | None = None
    correlation_id: str | None = None
    data: dict[str, Any]

    @classmethod
    def wrap(
        cls,
        event: Event,
        aggregate: Aggregate,
        *,
        user_id: str | None = None,
        causation_id: str | None = None,
        correlation_id: str | None = None,
        event_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> EventEnvelope:
        return cls(
            event_id=event_id or new_id(),
            type=event.type,
            version=type(event).schema_version,
            occurred_at=occurred_at or utcnow(),
            aggregate_type=aggregate.type,
            aggregate_id=aggregate.id,
            user_id=user_id,
            causation_id=causation_id,
            correlation_id=correlation_id or causation_id,
            data=event.model_dump(mode="json", exclude={"type"}),
        )

    def decode(self) -> Event:
        """The typed payload (upcast if old). Raises UnknownEventType / ValidationFailed."""
        return CATALOGUE.decode(self.type, self.version, self.data)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> EventEnvelope:
        return cls.model_validate_json(raw)


@dataclass
class RecordedEvent:
    """An event as stored: its stream sequence, subject and envelope."""

    seq: int
    subject: str
    envelope: EventEnvelope
    _event: Event | None = field(default=None, repr=False)

    @property
    def event(self) -> Event:
        if self._event is None:
            self._event = self.envelope.decode()
        return self._event

    @property
    def type(self) -> str:
        return self.envelope.type

    @classmethod
    def from_raw(cls, seq: int, subject: str, raw: bytes) -> RecordedEvent:
        return cls(seq=seq, subject=subject, envelope=EventEnvelope.from_bytes(raw))


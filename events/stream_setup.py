"""Creating and verifying the EVENTS stream. Our code owns it; FastStream never declares it."""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from events.envelope import STREAM_PREFIX
from events.errors import Unavailable


@dataclass(frozen=True)
class EventStreamSpec:
    """How the event log is stored. ``duplicate_window`` bounds idempotent re-appends."""

    name: str = "EVENTS"
    replicas: int = 1
    duplicate_window_s: float = 120.0

    @property
    def subjects(self) -> list[str]:
        return [f"{STREAM_PREFIX}.>"]

    def config(self) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            subjects=self.subjects,
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=0,
            max_msgs_per_subject=-1,
            num_replicas=self.replicas,
            duplicate_window=self.duplicate_window_s,
            allow_atomic=True,
            allow_direct=True,
        )


async def ensure_event_stream(js: JetStreamContext, spec: EventStreamSpec) -> None:
    """Create the stream, or verify an existing one and fix the settings we own.

    Idempotent. An existing stream with other subjects or memory storage is an error
    (:class:`Unavailable`): silently changing them could lose events.
    """
    try:
        info = await js.stream_info(spec.name)
    except NotFoundError:
        await js.add_stream(spec.config())
        return
    cfg = info.config
    if sorted(cfg.subjects or []) != sorted(spec.subjects) or cfg.storage != StorageType.FILE:
        raise Unavailable(
            f"stream {spec.name!r} exists with subjects {cfg.subjects} and storage {cfg.storage}; "
            f"expected {spec.subjects} on file storage",
            details={"stream": spec.name},
        )
    wanted = spec.config()
    if (
        not cfg.allow_atomic
        or (cfg.duplicate_window or 0) != wanted.duplicate_window
        or (cfg.num_replicas or 1) != spec.replicas
    ):
        cfg.allow_atomic = True
        cfg.duplicate_window = wanted.duplicate_window
        cfg.num_replicas = spec.replicas
        await js.update_stream(cfg)

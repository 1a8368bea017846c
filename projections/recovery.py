"""What the projector checks so that it never fails silently: the stream against its
checkpoint, the DuckDB file it opens, and which errors are worth retrying.

Stream checks (:func:`check_stream`, at every feed start, when the feed recreates its
consumer and every ``ProjectorConfig.stream_check_s`` while idle). Each finding is a
reason to rebuild every view from the log (:class:`StreamChanged`):

- a **recreated stream**: its identity (name and creation time) differs from the one
  recorded with the checkpoint (``_projection_meta.stream_id``);
- a **lost tail**: the stream's last sequence is below the checkpoint (an OS crash before
  the server's fsync: the server comes back without its last messages and reuses their
  sequences), or the last event applied (``AppliedMark``, recorded with each batch) is
  no longer the one at its sequence (sequences reused after the tail was lost and
  written again: found even when the new writes went past the checkpoint, and across a
  restart of the projector);
- **events removed before being projected**: the stream's first sequence is past the
  checkpoint + 1 while the checkpoint is above 0 (a purge, limits, or an erasure of
  events the projector had not reached).

Files (:func:`is_damaged`, :func:`move_aside`): a file DuckDB rejects as not a database
(or corrupt) is renamed ``<name>.damaged-<UTC timestamp>`` (its WAL with it) and the
views are rebuilt from the log into a new file. Any other open failure (a read-only file
system, permissions, a lock held by another process) leaves the file alone: the
projector is ``unavailable`` and tries again with backoff.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

log = logging.getLogger(__name__)

IO_ERRORS: tuple[type[BaseException], ...] = (
    duckdb.IOException, duckdb.FatalException, duckdb.PermissionException, OSError)
"""Errors about the file or the disk, not about an event or the SQL (disk full, a
read-only or vanished file, a database invalidated by an earlier write failure): the
projector logs them, reports ``retrying`` and retries with backoff."""

_DAMAGED_MARKERS = ("not a valid duckdb database", "corrupt", "checksum",
                    "failure while replaying wal", "invalid wal", "file is not a database")


class StreamChanged(Exception):
    """The stream no longer matches the checkpoint; ``reason`` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class AppliedMark:
    """The last event applied: its sequence and a digest of its subject and payload, to
    recognise a sequence reused by another event after a lost tail."""

    seq: int
    digest: bytes

    @classmethod
    def of(cls, seq: int, subject: bytes, payload: bytes) -> AppliedMark:
        h = hashlib.blake2b(subject, digest_size=16)
        h.update(b"\0")
        h.update(payload)
        return cls(seq, h.digest())


def stream_identity(stream: str, created: datetime | None) -> str:
    """What identifies one incarnation of a stream (recorded with the checkpoint)."""
    return f"{stream}@{created.isoformat() if created else ''}"


@dataclass(frozen=True)
class StreamFacts:
    identity: str
    first_seq: int
    last_seq: int


async def stream_facts(nc: NATS, stream: str) -> StreamFacts:
    info = await nc.jetstream().stream_info(stream)
    return StreamFacts(stream_identity(stream, info.created), int(info.state.first_seq),
                       int(info.state.last_seq))


async def check_stream(nc: NATS, stream: str, *, checkpoint: int, recorded_id: str | None,
                       mark: AppliedMark | None) -> StreamFacts:
    """The stream's facts; raises :class:`StreamChanged` if they contradict the
    checkpoint (see the module docstring). NATS errors propagate."""
    facts = await stream_facts(nc, stream)
    if recorded_id is not None and facts.identity != recorded_id:
        raise StreamChanged(f"stream {stream} was recreated (now {facts.identity}, the views "
                            f"were built from {recorded_id}; checkpoint {checkpoint})")
    if facts.last_seq < checkpoint:
        raise StreamChanged(
            f"stream {stream} ends at sequence {facts.last_seq}, below the projector's "
            f"checkpoint {checkpoint}: its tail was lost (e.g. an OS crash before the "
            f"server's fsync); {checkpoint - facts.last_seq} applied events no longer exist")
    if checkpoint > 0 and facts.first_seq > checkpoint + 1:
        raise StreamChanged(
            f"stream {stream} starts at sequence {facts.first_seq}, past the projector's "
            f"checkpoint {checkpoint} + 1: events {checkpoint + 1}..{facts.first_seq - 1} "
            "were removed before being projected")
    if mark is None or mark.seq < facts.first_seq:
        return facts
    if facts.last_seq < mark.seq:
        raise StreamChanged(
            f"stream {stream} ends at sequence {facts.last_seq}, below the last event the "
            f"projector applied ({mark.seq}): its tail was lost (e.g. an OS crash before "
            "the server's fsync)")
    try:
        msg = await nc.jetstream().get_msg(stream, mark.seq)
    except NotFoundError:
        return facts  # deleted (an erasure): no evidence either way
    now = AppliedMark.of(mark.seq, (msg.subject or "").encode(), msg.data or b"")
    if now.digest != mark.digest:
        raise StreamChanged(
            f"stream {stream} holds another event at sequence {mark.seq} than the one the "
            "projector applied there: its tail was lost and the sequences reused")
    return facts


def is_damaged(exc: BaseException) -> bool:
    """Whether an open failure says the file is not a (valid) DuckDB database."""
    text = str(exc).lower()
    return isinstance(exc, duckdb.Error) and any(m in text for m in _DAMAGED_MARKERS)


def move_aside(path: Path) -> Path:
    """Rename a damaged file (and its WAL) to ``<name>.damaged-<UTC timestamp>``;
    return the new path of the file."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    if path.exists():
        path.rename(target)
    wal = path.with_name(path.name + ".wal")
    if wal.exists():
        wal.rename(wal.with_name(f"{wal.name}.damaged-{stamp}"))
    return target

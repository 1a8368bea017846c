"""The event store: append, read, replay and watch over one JetStream stream.

Guarantees
- Order: events of one aggregate are read in append order; ``replay`` is in stream order.
- Optimistic concurrency: ``append(..., expected=N)`` succeeds only if the aggregate's
  last event has stream sequence ``N`` (``"no_stream"`` means 0, ``"any"`` skips the check).
  The check covers every subject of the aggregate (the ``...-Subject`` wildcard header), so
  a stale writer appending a new event type is rejected too. A conflict raises
  :class:`ConcurrencyError` carrying the current version.
- Idempotency: each event is published with ``Nats-Msg-Id`` =
  ``<aggregate type>.<aggregate id>:<command_id>:<n>`` (:func:`msg_id_for`; or its
  event id). Re-appending within the stream's duplicate window returns the original
  sequences with ``duplicate=True`` and appends nothing.
- Atomicity: several events go in one atomic batch (ADR-50): all stored or none.
  :meth:`EventStore.append_chain` is the cheaper, non-atomic alternative for commands
  that can finish an interrupted chain (see its docstring): on a single-replica file
  stream each atomic batch costs the server ~2-3 ms (it stages the batch in a file store
  of its own), a chain of single messages ~0.1 ms per message.

- Erasure: :meth:`EventStore.erase` deletes an aggregate's events *with erase*: the
  server overwrites each message's bytes in its block file with random data before it
  answers, so the content is in no file of the store afterwards (a purge only marks
  messages deleted and leaves the bytes; see ``docs/erasure-nats.md``).

Failure modes: a server that does not answer in ``timeout`` raises :class:`Unavailable`;
nothing is retried here (the caller decides, since a timed-out append may have landed:
re-append with the same ids to find out; an erase is idempotent: run it again).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from events.ack_router import AckRouter
from events.catalogue import Event
from events.envelope import Aggregate, EventEnvelope, RecordedEvent
from events.errors import ConcurrencyError, PayloadTooLarge, ThreadlogError, Unavailable
from events.ids import derived_id, new_id
from events.stream_setup import EventStreamSpec, ensure_event_stream

Expected = int | Literal["any", "no_stream"]

H_MSG_ID = "Nats-Msg-Id"
H_EXPECTED_SEQ = "Nats-Expected-Last-Subject-Sequence"
# nats-py has no constant for this header (server 2.11+): the literal string is required.
H_EXPECTED_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
H_EXPECTED_LAST_MSG_ID = "Nats-Expected-Last-Msg-Id"
H_BATCH_ID = "Nats-Batch-Id"
H_BATCH_SEQ = "Nats-Batch-Sequence"
H_BATCH_COMMIT = "Nats-Batch-Commit"

ERR_WRONG_LAST_SEQ = 10071
ERR_WRONG_LAST_MSG_ID = 10070
"""``Nats-Expected-Last-Msg-Id`` not the stream's last message id."""
ERR_NO_MESSAGE = 10037
"""``no message found`` of a message get."""
_GONE = ("no message found", "stream store eof")
"""A message delete answers every failure with err_code 10057; these descriptions mean
the sequence is already deleted (or beyond the stream's last): nothing left to erase."""
ERASE_WINDOW = 64
"""Erase (or look-up) requests in flight at once on the JetStream API."""
ERR_BATCH_DUPLICATE = 10201
MAX_BATCH = 1000
FEW = 8
"""Events a catching-up read fetches one by one before it opens a consumer."""
_LAST_SEQ = re.compile(r"wrong last sequence: (\d+)")


def msg_id_for(aggregate: Aggregate, command_id: str, n: int) -> str:
    """``Nats-Msg-Id`` of the ``n``-th event a command appends to ``aggregate``:
    ``<type>.<id>:<command_id>:<n>``. JetStream deduplicates message ids across the whole
    stream, so the id names the aggregate: the same command id sent by two users (or
    for two threads) are two commands, never one silently dropped."""
    return f"{aggregate.type}.{aggregate.id}:{command_id}:{n}"


def command_id_of(msg_id: str) -> str | None:
    """The command id in a message id of :func:`msg_id_for` (or of the older
    ``<command_id>:<n>`` form); None for other ids."""
    parts = msg_id.split(":")
    if len(parts) == 3:
        return parts[1]
    if len(parts) == 2:
        return parts[0]
    return None


def _expected_headers(aggregate: Aggregate, expected: Expected) -> dict[str, str]:
    """The optimistic-concurrency headers of an append (none for ``"any"``)."""
    if expected == "any":
        return {}
    return {H_EXPECTED_SEQ: str(0 if expected == "no_stream" else int(expected)),
            H_EXPECTED_SUBJECT: aggregate.filter}


@dataclass(frozen=True)
class AppendResult:
    """Where an append landed. ``last_seq`` is the aggregate's new version."""

    first_seq: int
    last_seq: int
    count: int
    duplicate: bool = False
    seqs: tuple[int, ...] = ()
    """Each event's sequence (:meth:`EventStore.append_chain` only: a chain's events need
    not be consecutive in the stream)."""


@dataclass(frozen=True)
class EventRef:
    """What erasure needs of one stored event: where it is and which commands caused it
    (no content). ``command_ids`` are the candidates for the command's stored reply:
    the ``Nats-Msg-Id``'s command id (:func:`command_id_of`), the causation and
    correlation ids."""

    seq: int
    subject: str
    type: str
    user_id: str | None
    command_ids: frozenset[str]

    @classmethod
    def from_msg(cls, seq: int, subject: str, headers: dict[str, str] | None,
                 data: bytes) -> EventRef:
        ids: set[str] = set()
        msg_id = (headers or {}).get(H_MSG_ID)
        command_id = command_id_of(msg_id) if msg_id else None
        if command_id:
            ids.add(command_id)
        env: dict[str, Any] = {}
        with contextlib.suppress(ValueError):
            decoded = json.loads(data)
            if isinstance(decoded, dict):
                env = decoded
        for k in ("causation_id", "correlation_id"):
            v = env.get(k)
            if isinstance(v, str) and v:
                ids.add(v)
        user = env.get("user_id")
        return cls(seq=seq, subject=subject, type=str(env.get("type", "")),
                   user_id=user if isinstance(user, str) and user else None,
                   command_ids=frozenset(ids))


class EventStore:
    """Append and read events of aggregates on the EVENTS stream (one narrow interface)."""

    def __init__(self, nc: NATS, spec: EventStreamSpec | None = None, *,
                 timeout: float = 5.0, max_batches_in_flight: int = 40) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=timeout)
        self.spec = spec or EventStreamSpec()
        self.timeout = timeout
        # The server allows 50 atomic batches in flight per stream; stay under it.
        self._batch_slots = asyncio.Semaphore(max_batches_in_flight)
        self._acks = AckRouter(nc)

    @property
    def stream(self) -> str:
        return self.spec.name

    async def close(self) -> None:
        """Stop the ack router (the connection stays the caller's)."""
        await self._acks.close()

    async def setup(self) -> None:
        """Create or verify the stream (idempotent)."""
        await ensure_event_stream(self.js, self.spec)

    # ------------------------------------------------------------------ append
    def envelopes(
        self,
        aggregate: Aggregate,
        events: Sequence[Event | EventEnvelope],
        *,
        command_id: str | None = None,
        user_id: str | None = None,
        correlation_id: str | None = None,
        first_index: int = 0,
    ) -> list[EventEnvelope]:
        """Wrap payloads; event ids derive from ``command_id`` (and the event's index in
        the command, from ``first_index``) so a retry is identical."""
        out: list[EventEnvelope] = []
        for n, ev in enumerate(events, first_index):
            if isinstance(ev, EventEnvelope):
                out.append(ev)
                continue
            event_id = derived_id(command_id, str(n)) if command_id else new_id()
            out.append(EventEnvelope.wrap(ev, aggregate, user_id=user_id, causation_id=command_id,
                                          correlation_id=correlation_id, event_id=event_id))
        return out

    async def append(
        self,
        aggregate: Aggregate,
        events: Sequence[Event | EventEnvelope],
        expected: Expected = "any",
        *,
        command_id: str | None = None,
        user_id: str | None = None,
        correlation_id: str | None = None,
    ) -> AppendResult:
        """Append ``events`` to ``aggregate`` atomically. See the module docstring."""
        if not events:
            raise ValueError("append needs at least one event")
        if len(events) > MAX_BATCH:
            raise PayloadTooLarge(f"at most {MAX_BATCH} events per append",
                                  details={"count": len(events)})
        envs = self.envelopes(aggregate, events, command_id=command_id, user_id=user_id,
                              correlation_id=correlation_id)
        msg_ids = [msg_id_for(aggregate, command_id, n) if command_id else e.event_id
                   for n, e in enumerate(envs)]
        check = _expected_headers(aggregate, expected)
        subjects = [aggregate.subject(e.type) for e in envs]
        payloads = [e.to_bytes() for e in envs]
        if len(envs) == 1:
            ack = await self._request(subjects[0], payloads[0], {H_MSG_ID: msg_ids[0], **check})
        else:
            async with self._batch_slots:
                ack = await self._publish_batch(subjects, payloads, msg_ids, check)
        if "error" in ack:
            return await self._on_error(aggregate, ack["error"], msg_ids[-1], len(envs))
        last = int(ack["seq"])
        return AppendResult(first_seq=last - len(envs) + 1, last_seq=last, count=len(envs),
                            duplicate=bool(ack.get("duplicate")))

    async def append_two(
        self,
        aggregate: Aggregate,
        first: Event,
        second: Event,
        expected: Expected,
        *,
        command_ids: tuple[str, str],
        user_id: str | None = None,
        correlation_id: str | None = None,
    ) -> tuple[AppendResult, AppendResult | None]:
        """Append ``first`` (checked against ``expected`` like :meth:`append`) and then
        ``second`` without waiting for the first's acknowledgement: one round trip for two
        appends that need not be atomic (each has its own command id).

        ``second`` carries ``Nats-Expected-Last-Msg-Id`` = ``first``'s message id: the
        stream stores it only if ``first`` is the last message of the whole stream, so no
        event of this aggregate (or any other) came in between. When anything did, or
        ``first`` was refused, ``second`` is not stored and ``None`` is returned in its
        place: the caller appends it the ordinary way. Errors of ``first`` raise as in
        :meth:`append` (after ``second``'s reply, which then is a refusal)."""
        (env1,) = self.envelopes(aggregate, [first], command_id=command_ids[0],
                                 user_id=user_id, correlation_id=correlation_id)
        (env2,) = self.envelopes(aggregate, [second], command_id=command_ids[1],
                                 user_id=user_id, correlation_id=correlation_id)
        id1 = msg_id_for(aggregate, command_ids[0], 0)
        id2 = msg_id_for(aggregate, command_ids[1], 0)
        check = _expected_headers(aggregate, expected)
        ack1, ack2 = await self._request_in_order([
            (aggregate.subject(env1.type), env1.to_bytes(), {H_MSG_ID: id1, **check}),
            (aggregate.subject(env2.type), env2.to_bytes(),
             {H_MSG_ID: id2, H_EXPECTED_LAST_MSG_ID: id1})])
        if "error" in ack1:
            res1 = await self._on_error(aggregate, ack1["error"], id1, 1)
        else:
            res1 = AppendResult(int(ack1["seq"]), int(ack1["seq"]), 1,
                                duplicate=bool(ack1.get("duplicate")))
        if "error" in ack2 or res1.duplicate:
            # A duplicate first means a re-sent command: whether second landed before is
            # for the caller's ordinary path to find out (its dedupe is by message id).
            return res1, None
        seq2 = int(ack2["seq"])
        return res1, AppendResult(seq2, seq2, 1, duplicate=bool(ack2.get("duplicate")))

    async def append_chain(
        self,
        aggregate: Aggregate,
        events: Sequence[Event],
        expected: Expected,
        *,
        command_id: str,
        first_index: int = 0,
        user_id: str | None = None,
        correlation_id: str | None = None,
    ) -> AppendResult:
        """Append ``events`` (the command's events from index ``first_index`` on) in
        order, as single messages in one round trip: not atomic, but never with a gap.

        The first message is checked against ``expected`` like :meth:`append`; each next
        one carries ``Nats-Expected-Last-Msg-Id`` = the previous one's message id, so it
        is stored only right after it: no event of this aggregate (or any other) comes in
        between. When another connection's message came in between (``wrong last msg
        ID``), the rest is sent again the same way, checked against the aggregate's
        version after the last stored event. Message ids and event ids are those
        :meth:`append` gives the command's events (``first_index`` + position), so a
        re-append of a stored event is a duplicate.

        Returns every event's sequence in ``seqs``. ``duplicate=True`` when an event was
        stored before (a re-sent command): what was stored is for the caller to read.
        Raises :class:`ConcurrencyError` when the aggregate moved on, before or in the
        middle of the chain: a prefix of ``events`` may then be stored (the caller reads
        the aggregate and appends the rest); errors as in :meth:`append` otherwise.

        Failure modes: a process that dies in the middle (its write cut short, or
        before it resent the rest after another message came in between) leaves a
        prefix of the events stored: the command's owner must recognize and finish an
        interrupted chain (``CommandRunner.apply_chain`` does, for the generation
        steps of ``handlers.agents.steps``)."""
        if not events:
            raise ValueError("append_chain needs at least one event")
        envs = self.envelopes(aggregate, events, command_id=command_id, user_id=user_id,
                              correlation_id=correlation_id, first_index=first_index)
        ids = [msg_id_for(aggregate, command_id, first_index + n) for n in range(len(envs))]
        subjects = [aggregate.subject(e.type) for e in envs]
        payloads = [e.to_bytes() for e in envs]
        check = _expected_headers(aggregate, expected)
        seqs: list[int] = []
        i = 0
        while i < len(envs):
            msgs = []
            for j in range(i, len(envs)):
                headers = {H_MSG_ID: ids[j],
                           **(check if j == i else {H_EXPECTED_LAST_MSG_ID: ids[j - 1]})}
                msgs.append((subjects[j], payloads[j], headers))
            acks = await self._request_in_order(msgs)
            if "error" in acks[0]:
                # Stored before, whole (the aggregate's last event is the chain's last):
                # a duplicate; else a conflict.
                res = await self._on_error(aggregate, acks[0]["error"], ids[-1], len(ids) - i)
                return AppendResult(res.first_seq, res.last_seq, len(ids), duplicate=True,
                                    seqs=(*seqs, res.last_seq))
            for ack in acks:
                err = ack.get("error")
                if err is not None:
                    if err.get("err_code") == ERR_WRONG_LAST_MSG_ID:
                        break  # another message came in between: send the rest again
                    raise ThreadlogError(f"append to {aggregate.prefix} rejected: "
                                         f"{err.get('description', '')}", code="append_failed",
                                         details={"server_error": err})
                seqs.append(int(ack["seq"]))
                i += 1
                if ack.get("duplicate"):
                    return AppendResult(seqs[0], seqs[-1], len(seqs), duplicate=True,
                                        seqs=tuple(seqs))
            check = _expected_headers(aggregate, seqs[-1])
        return AppendResult(seqs[0], seqs[-1], len(seqs), seqs=tuple(seqs))

    async def _request(self, subject: str, payload: bytes, headers: dict[str, str]) -> Any:
        (ack,) = await self._request_in_order([(subject, payload, headers)])
        return ack

    async def _request_in_order(self, messages: list[tuple[str, bytes, dict[str, str]]]
                                ) -> list[Any]:
        """Publish ``messages`` in order through the ack router and return their decoded
        acknowledgements (in order)."""
        subject = messages[0][0]
        try:
            if len(messages) == 1:
                replies = [await self._acks.request(*messages[0], self.timeout)]
            else:
                replies = await self._acks.request_in_order(messages, self.timeout)
        except TimeoutError as exc:
            raise Unavailable(f"no acknowledgement from stream {self.stream!r} in "
                              f"{self.timeout}s", details={"subject": subject}) from exc
        for data, (subj, _, _) in zip(replies, messages, strict=True):
            if not data:  # a no-responders status: no stream listens on this subject
                raise Unavailable(f"no stream stores {subj!r}", details={"subject": subj})
        return [json.loads(data) for data in replies]

    async def _publish_batch(self, subjects: list[str], payloads: list[bytes],
                             msg_ids: list[str], check: dict[str, str]) -> Any:
        batch_id = new_id()
        last = len(subjects)
        for i, (subject, payload, msg_id) in enumerate(zip(subjects, payloads, msg_ids,
                                                           strict=True), 1):
            headers = {H_BATCH_ID: batch_id, H_BATCH_SEQ: str(i), H_MSG_ID: msg_id}
            if i == 1:
                headers.update(check)
            if i == last:
                headers[H_BATCH_COMMIT] = "1"
                return await self._request(subject, payload, headers)
            # Intermediate messages need no reply: the server reports any error on commit.
            await self.nc.publish(subject, payload, headers=headers)
        raise AssertionError("unreachable")

    async def _on_error(self, aggregate: Aggregate, err: dict[str, Any], last_msg_id: str,
                        count: int) -> AppendResult:
        code = err.get("err_code")
        desc = str(err.get("description", ""))
        if code in (ERR_WRONG_LAST_SEQ, ERR_BATCH_DUPLICATE):
            # A re-sent append can hit the version check (or the batch dedupe) before the
            # per-message dedupe: if the aggregate's last event is ours, it is a duplicate.
            seq, last_id = await self._last_with_msg_id(aggregate)
            if last_id == last_msg_id:
                return AppendResult(seq - count + 1, seq, count, duplicate=True)
            if code == ERR_BATCH_DUPLICATE:
                # Our batch landed earlier and others appended since: report the current
                # version (>= ours, so read-your-writes still holds).
                return AppendResult(seq, seq, count, duplicate=True)
            m = _LAST_SEQ.search(desc)
            current = int(m.group(1)) if m else seq
            raise ConcurrencyError(
                f"{aggregate.type} {aggregate.id!r} is at version {current}",
                current_version=current, details={"aggregate": aggregate.prefix},
            )
        raise ThreadlogError(f"append to {aggregate.prefix} rejected: {desc}",
                             code="append_failed", details={"server_error": err})

    async def _last_with_msg_id(self, aggregate: Aggregate) -> tuple[int, str | None]:
        try:
            msg = await self.js.get_last_msg(self.stream, aggregate.filter)
        except NotFoundError:
            return 0, None
        return int(msg.seq or 0), (msg.headers or {}).get(H_MSG_ID)

    # ------------------------------------------------------------------ read
    async def version(self, aggregate: Aggregate) -> int:
        """The aggregate's current version (last stream sequence), 0 if it has no events.

        Read from the stream leader (not Direct Get), so it is read-after-write coherent.
        """
        seq, _ = await self._last_with_msg_id(aggregate)
        return seq

    async def last_seq(self) -> int:
        """The stream's last sequence (0 when empty)."""
        info = await self.js.stream_info(self.stream)
        return int(info.state.last_seq)

    async def read(self, aggregate: Aggregate, after_seq: int = 0) -> list[RecordedEvent]:
        """Every event of ``aggregate`` with sequence > ``after_seq``, in order.

        A cache catching up (``after_seq`` > 0) usually misses one or two events: those
        are fetched one by one from the stream leader (one round trip each, no consumer);
        past ``FEW`` of them, or for a full read, an ordered consumer streams the rest."""
        end = await self.version(aggregate)
        if end <= after_seq:
            return []
        out: list[RecordedEvent] = []
        if after_seq > 0:
            nxt = after_seq + 1
            for _ in range(FEW):
                msg = await self._next_msg(aggregate.filter, nxt)
                if msg is None:
                    return out
                seq = int(msg.seq or 0)
                out.append(RecordedEvent.from_raw(seq, msg.subject or "", msg.data or b""))
                if seq >= end:
                    return out
                nxt = seq + 1
            after_seq = nxt - 1
        out += [RecordedEvent.from_raw(seq, subj, data)
                async for seq, subj, data in self._iterate(aggregate.filter, after_seq + 1, end)]
        return out

    async def _next_msg(self, subject: str, seq: int) -> Any:
        try:
            return await self.js.get_msg(self.stream, seq=seq, subject=subject, next=True)
        except NotFoundError:
            return None

    async def replay(self, from_seq: int = 1, *, subject: str | None = None,
                     until_seq: int | None = None) -> AsyncIterator[RecordedEvent]:
        """Events from ``from_seq`` up to the stream's end as of the call (or ``until_seq``)."""
        async for seq, subj, data in self.replay_raw(from_seq, subject=subject,
                                                     until_seq=until_seq):
            yield RecordedEvent.from_raw(seq, subj, data)

    async def replay_raw(self, from_seq: int = 1, *, subject: str | None = None,
                         until_seq: int | None = None
                         ) -> AsyncIterator[tuple[int, str, bytes]]:
        """Like :meth:`replay` without decoding: ``(seq, subject, payload bytes)``."""
        end = until_seq if until_seq is not None else await self.last_seq()
        if end < from_seq:
            return
        async for item in self._iterate(subject or f"{self.spec.subjects[0]}", from_seq, end):
            yield item

    async def watch(self, aggregate: Aggregate | None = None, from_seq: int = 1
                    ) -> AsyncIterator[RecordedEvent]:
        """Catch up from ``from_seq`` then follow live, forever (cancel to stop)."""
        subject = aggregate.filter if aggregate else self.spec.subjects[0]
        async for seq, subj, data in self._iterate(subject, from_seq, None):
            yield RecordedEvent.from_raw(seq, subj, data)

    async def _iterate(self, subject: str, from_seq: int, end: int | None
                       ) -> AsyncIterator[tuple[int, str, bytes]]:
        """An ordered push consumer from ``from_seq``; stops after ``end`` (None: never).

        Messages purged from the stream are skipped, so the last one delivered may be
        below ``end``: we also stop when the consumer reports nothing pending.
        """
        async for seq, msg in self._iterate_msgs(subject, from_seq, end):
            yield seq, msg.subject, msg.data

    async def _iterate_msgs(self, subject: str, from_seq: int, end: int | None
                            ) -> AsyncIterator[tuple[int, Msg]]:
        """:meth:`_iterate` yielding ``(stream sequence, message)`` (headers included)."""
        sub = await self.js.subscribe(
            subject, stream=self.stream, ordered_consumer=True,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            config=ConsumerConfig(opt_start_seq=max(1, from_seq)),
            pending_msgs_limit=1_000_000, pending_bytes_limit=1024 * 1024 * 1024,
        )
        try:
            if end is not None:
                # Nothing to deliver at all (everything purged) must not block forever.
                probe = await self._first_seq_at_or_after(subject, from_seq)
                if probe is None or probe > end:
                    return
            while True:
                try:
                    msg = await sub.next_msg(timeout=None if end is None else self.timeout)
                except nats.errors.TimeoutError:
                    raise Unavailable(f"replay of {subject} stalled",
                                      details={"subject": subject}) from None
                meta = msg.metadata
                seq = meta.sequence.stream
                if end is not None and seq > end:
                    return
                yield seq, msg
                if end is not None and (seq >= end or meta.num_pending == 0):
                    return
        finally:
            with contextlib.suppress(Exception):  # the connection may be closing
                await sub.unsubscribe()

    async def _first_seq_at_or_after(self, subject: str, seq: int) -> int | None:
        msg = await self._next_msg(subject, max(1, seq))
        return None if msg is None else int(msg.seq or 0)

    # ------------------------------------------------------------------ delete
    async def purge(self, aggregate: Aggregate, *, keep_last: int = 0) -> None:
        """Remove the aggregate's events from the log (keeping the last ``keep_last``).

        Not an erasure: the server only marks the messages deleted and their bytes stay
        in the block files until a compaction that may never come (and a purged message
        can no longer be erased). Use :meth:`erase` for content that must be gone."""
        await self.js.purge_stream(self.stream, subject=aggregate.filter,
                                   keep=keep_last or None)

    async def refs(self, aggregate: Aggregate) -> list[EventRef]:
        """Every event of ``aggregate`` (up to its version at the call) as an
        :class:`EventRef`, in order: one subject-filtered ordered consumer."""
        end = await self.version(aggregate)
        if end == 0:
            return []
        return [EventRef.from_msg(seq, msg.subject, msg.headers, msg.data)
                async for seq, msg in self._iterate_msgs(aggregate.filter, 1, end)]

    async def erase(self, aggregate: Aggregate, *, keep_types: Collection[str] = (),
                    last_types: Collection[str] = (),
                    before: Callable[[list[EventRef]], Awaitable[None]] | None = None
                    ) -> int:
        """Erase every event of ``aggregate`` except those whose type is in
        ``keep_types`` (e.g. the content-free ``thread_deleted`` tombstone). Returns how
        many were erased. Events whose type is in ``last_types`` are erased only once
        every other one is: the event an index finds the aggregate by (e.g.
        ``thread_created``) goes last, so a crash mid-way leaves the aggregate findable.

        ``before`` is awaited with the events about to be erased (not yet erased), so a
        caller can first erase what was derived from them (the command log's replies)
        while their command ids can still be read: a crash in between leaves the
        events, and running ``erase`` again repeats both steps.

        Guarantees: on return every erased message's bytes were overwritten with random
        data by the server (``no_erase: false``), in the block files too. Idempotent: an
        already erased or missing sequence counts as done. Events appended after the
        call started are not erased (call again). Failure modes: :class:`Unavailable`
        when the server does not answer in ``timeout`` (part may be erased: call again);
        :class:`ThreadlogError` (``erase_failed``) when it refuses (e.g. a stream with
        ``deny_delete``)."""
        refs = [r for r in await self.refs(aggregate) if r.type not in keep_types]
        if not refs:
            return 0
        if before is not None:
            await before(refs)
        n = await self.erase_seqs(self.stream, [r.seq for r in refs if r.type not in last_types])
        return n + await self.erase_seqs(self.stream,
                                         [r.seq for r in refs if r.type in last_types])

    def _api(self, op: str, stream: str) -> str:
        prefix = getattr(self.js, "_prefix", None) or "$JS.API"
        return f"{prefix}.STREAM.{op}.{stream}"

    async def _api_pipelined(self, subject: str, bodies: Sequence[dict[str, Any]]
                             ) -> list[dict[str, Any]]:
        """Send JetStream API requests without waiting for one reply before the next
        (``ERASE_WINDOW`` in flight) and return the decoded replies in order."""
        out: list[dict[str, Any]] = []
        for i in range(0, len(bodies), ERASE_WINDOW):
            chunk = bodies[i:i + ERASE_WINDOW]
            out += await self._request_in_order(
                [(subject, json.dumps(b).encode(), {}) for b in chunk])
        return out

    async def erase_seqs(self, stream: str, seqs: Iterable[int]) -> int:
        """Delete the messages ``seqs`` of ``stream`` with erase (the server overwrites
        their bytes with random data), pipelined. Returns how many the server erased
        now (already deleted or missing ones are fine and not counted).

        Raises :class:`ThreadlogError` (``erase_failed``) on any other refusal, e.g.
        ``message delete not permitted`` on a ``deny_delete`` stream (every KV bucket
        that nats-py creates), and :class:`Unavailable` on no answer."""
        todo = sorted(set(seqs))
        if not todo:
            return 0
        replies = await self._api_pipelined(self._api("MSG.DELETE", stream),
                                            [{"seq": s, "no_erase": False} for s in todo])
        erased = 0
        for seq, rep in zip(todo, replies, strict=True):
            err = rep.get("error")
            if err is None:
                erased += bool(rep.get("success"))
            elif not (err.get("err_code") == ERR_NO_MESSAGE
                      or str(err.get("description", "")).lower() in _GONE):
                raise ThreadlogError(
                    f"erasing message {seq} of stream {stream!r} was refused: "
                    f"{err.get('description')}", code="erase_failed",
                    details={"stream": stream, "seq": seq, "server_error": err})
        return erased

    async def last_seqs(self, stream: str, subjects: Iterable[str]) -> dict[str, int]:
        """The sequence of the last message on each of ``subjects`` in ``stream`` (from
        the stream leader, pipelined); subjects with no message are left out."""
        subs = sorted(set(subjects))
        if not subs:
            return {}
        replies = await self._api_pipelined(self._api("MSG.GET", stream),
                                            [{"last_by_subj": s} for s in subs])
        out: dict[str, int] = {}
        for subj, rep in zip(subs, replies, strict=True):
            err = rep.get("error")
            if err is None:
                out[subj] = int(rep["message"]["seq"])
            elif err.get("err_code") != ERR_NO_MESSAGE:
                raise ThreadlogError(f"reading {subj!r} of stream {stream!r} failed: "
                                     f"{err.get('description')}", code="read_failed",
                                     details={"stream": stream, "server_error": err})
        return out

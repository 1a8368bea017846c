"""Turning the feed's events into a batch the views apply: screen, cut, encode, share out.

:func:`prepare` runs on the projector's event loop while the writer lanes apply the
previous batch. Steps, in order:

1. events recorded as rejected before (``known``: the ``rejected_events`` rows, and
   events isolated by the projector's bisection fallback) are dropped again;
2. the screen (:mod:`projections.screen`) rejects unknown types, invalid UTF-8 and
   envelopes that are not JSON objects with an object ``data``;
3. a thread's events preceding its ``thread_deleted`` in the batch are dropped (invariant
   8; a rejected tombstone deletes nothing);
4. old envelope versions are upcast; the events become one Arrow table (``seq``, ``type``,
   ``payload``) and each view's share (:class:`~projections.batch.Batch` for SQL views,
   a folded :class:`~projections.view.ViewBatch` for Python views);
5. the views with ``takes_rejections`` get the batch's rejections above their checkpoint.

A Python-folding view raising in ``add`` (a field of the wrong type) makes that event a
rejection too, and the batch is prepared again without it, so every view sees the same
events. The result is a function of the events alone (never of batch boundaries): the same
events are rejected, with the same errors, in a rebuild.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from events.catalogue import CATALOGUE
from events.errors import ThreadlogError
from projections.batch import Batch
from projections.feed import Item
from projections.screen import Rejection, invalid_utf8, screen_python, screen_shape
from projections.view import SqlView, View, ViewBatch

log = logging.getLogger("projections.projector")
EVENTS = "_projector_batch"
"""The name the batch's Arrow table is registered under in each lane's transaction."""
_THREAD = b"events.thread."
_DELETED = b".thread_deleted"
_POOL = pa.system_memory_pool()
"""Batches are allocated with malloc, not pyarrow's default mimalloc pool, which keeps
freed pages (about 45 MB more resident memory during a rebuild)."""
KNOWN_TYPES = frozenset(t.encode() for t in CATALOGUE.types())
VERSION_MARKERS = {
    t.encode(): f'"version":{CATALOGUE.model(t).schema_version},'.encode()
    for t in CATALOGUE.types() if CATALOGUE.model(t).schema_version != 1}
"""Types whose current schema is newer than 1: payloads without this marker (the
envelope's compact ``"version":N,``) are upcast before the views see them."""
StoredAt = Callable[[int], Awaitable[str | None]]


@dataclass
class Prepared:
    """A batch ready to apply: the events as Arrow, and each view's share (None: the view
    handles none of them but its checkpoint still advances)."""

    table: pa.Table
    batches: list[tuple[View, Batch | ViewBatch | None]]
    last_seq: int
    count: int
    raw: list[Item] = field(default_factory=list)
    """The batch as the feed delivered it (prepared again after isolating poison)."""
    items: list[Item] = field(default_factory=list)
    """The events the views apply (screened, deleted content dropped)."""
    rejections: list[Rejection] = field(default_factory=list)
    new_rejections: list[Rejection] = field(default_factory=list)
    """Rejections no earlier run recorded (logged, counted)."""
    tombstones: bool = False
    """The batch holds a ``thread_deleted`` (content may be erased: the file compacted)."""


class _Poison(Exception):
    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.error)
        self.rejection = rejection


async def prepare(raw: list[Item], views: Sequence[View], floors: Mapping[str, int],
                  known: dict[int, Rejection], stored_at: StoredAt) -> Prepared:
    """Steps 1-5 of the module docstring. ``known`` gains the rejections found."""
    fresh: dict[int, Rejection] = {}
    while True:
        rejected = {it[0]: known[it[0]] for it in raw if it[0] in known} if known else {}
        items = [it for it in raw if it[0] not in rejected] if rejected else raw
        types = [it[1][it[1].rfind(b".") + 1:] for it in items]
        found = {items[i][0]: r for i, r in screen_python(items, types, KNOWN_TYPES).items()}
        items, types = _without(items, types, found)
        try:
            payload_col = _strings([it[2] for it in items])
        except pa.ArrowInvalid:
            bad = {items[i][0]: r for i, r in invalid_utf8(items, ()).items()}
            found.update(bad)
            items, types = _without(items, types, bad)
            payload_col = _strings([it[2] for it in items])
        encoded = (items, types, payload_col)
        if items:
            shape = screen_shape([it[0] for it in items], payload_col)
            if shape:
                by_seq = {it[0]: it for it in items}
                bad = {s: Rejection.of(by_seq[s], e) for s, e in shape.items()}
                found.update(bad)
                items, types = _without(items, types, bad)
        for r in found.values():
            known[r.seq] = fresh[r.seq] = r
        try:
            prepared = _build(raw, _without_content_of_deleted_threads(items), views, floors,
                              encoded)
        except _Poison as exc:
            known[exc.rejection.seq] = fresh[exc.rejection.seq] = exc.rejection
            continue
        prepared.rejections = sorted([*rejected.values(), *found.values()],
                                     key=lambda r: r.seq)
        prepared.new_rejections = sorted(fresh.values(), key=lambda r: r.seq)
        await _give_rejections(prepared, views, floors, stored_at)
        return prepared


def _without(items: list[Item], types: list[bytes], drop: Mapping[int, Any]
             ) -> tuple[list[Item], list[bytes]]:
    if not drop:
        return items, types
    keep = [i for i, it in enumerate(items) if it[0] not in drop]
    return [items[i] for i in keep], [types[i] for i in keep]


def _strings(values: list[bytes]) -> pa.Array:
    """``values`` as an Arrow string array (``ArrowInvalid`` if one is not UTF-8)."""
    return pa.array(values, pa.binary(), memory_pool=_POOL).cast(pa.string(),
                                                                 memory_pool=_POOL)


def _build(raw: list[Item], items: list[Item], views: Sequence[View],
           floors: Mapping[str, int],
           encoded: tuple[list[Item], list[bytes], pa.Array]) -> Prepared:
    """Step 4: SQL views get the JSON as is (the type is the subject's last token; DuckDB
    decodes); Python-folding views get each of their events decoded once with ``json``.
    ``encoded`` is the screened events' payload column, reused when nothing changed."""
    last = raw[-1][0]
    if not items:
        return Prepared(pa.table({"seq": pa.array([], pa.int64()),
                                  "type": pa.array([], pa.string()),
                                  "payload": pa.array([], pa.string())}),
                        [(v, None) for v in views if floors.get(v.name, 0) < last],
                        last, len(raw), raw, items)
    seqs = [it[0] for it in items]
    types, col = _subset(encoded, items)
    payloads = [it[2] for it in items]
    upcast = False
    for i, t in enumerate(types):
        marker = VERSION_MARKERS.get(t)
        if marker is not None and marker not in payloads[i]:
            payloads[i] = _upcast(items[i], payloads[i])
            upcast = True
    if upcast:
        col = _strings(payloads)
    present = {t.decode() for t in set(types)}
    first = seqs[0]
    table = pa.Table.from_arrays(
        [pa.array(seqs, pa.int64(), memory_pool=_POOL),
         _strings(types), col], names=["seq", "type", "payload"])
    batches: list[tuple[View, Batch | ViewBatch | None]] = []
    shared: dict[str, Any] = {}
    folding: dict[bytes, list[tuple[int, ViewBatch]]] = {}
    for view in views:
        floor = floors.get(view.name, 0)
        if floor >= last:
            continue
        mine = frozenset(view.handles & present)
        if view.takes_rejections:
            batches.append((view, None))  # filled by _give_rejections
        elif not mine:
            batches.append((view, None))
        elif isinstance(view, SqlView):
            where = "type IN (" + ", ".join(f"'{t}'" for t in sorted(mine)) + ")"
            if floor >= first:
                where += f" AND seq > {floor}"
            batches.append((view, Batch(f"(SELECT seq, type, payload FROM {EVENTS} "
                                        f"WHERE {where})", mine, floor=floor, first=first,
                                        whole=EVENTS, shared=shared)))
        else:
            vb = view.new_batch()
            batches.append((view, vb))
            for name in mine:
                folding.setdefault(name.encode(), []).append((floor, vb))
    if folding:
        loads = json.loads
        for item, t, payload in zip(items, types, payloads, strict=True):
            targets = folding.get(t)
            if targets:
                seq = item[0]
                try:
                    env = loads(payload)
                    for floor, vb in targets:
                        if seq > floor:
                            vb.add(seq, env)
                except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
                    raise _Poison(Rejection.of(
                        item, f"{type(exc).__name__} in a view: {exc}")) from None
    return Prepared(table, batches, last, len(raw), raw, items,
                    tombstones="thread_deleted" in present)


def _subset(encoded: tuple[list[Item], list[bytes], pa.Array], items: list[Item]
            ) -> tuple[list[bytes], pa.Array]:
    """The types and encoded payloads of ``items``, an ordered subset of ``encoded[0]``
    (what the cut kept), without encoding the payloads again."""
    whole, types, col = encoded
    if len(whole) == len(items):
        return types, col
    mask, j = [], 0
    for it in whole:
        hit = j < len(items) and items[j] is it
        mask.append(hit)
        j += hit
    return [t for t, m in zip(types, mask, strict=True) if m], col.filter(pa.array(mask))


def _upcast(item: Item, payload: bytes) -> bytes:
    env = json.loads(payload)
    try:
        event = CATALOGUE.decode(env["type"], env.get("version", 1), env["data"])
    except ThreadlogError as exc:
        log.warning("event %s kept as is: %s", env.get("event_id"), exc)
        return payload
    except (TypeError, ValueError, KeyError) as exc:
        raise _Poison(Rejection.of(item, f"cannot upcast: {type(exc).__name__}: {exc}")
                      ) from None
    env["data"] = event.model_dump(mode="json", exclude={"type"})
    env["version"] = type(event).schema_version
    return json.dumps(env).encode()


async def _give_rejections(prepared: Prepared, views: Sequence[View],
                           floors: Mapping[str, int], stored_at: StoredAt) -> None:
    if not prepared.rejections:
        return
    for i, (view, _) in enumerate(prepared.batches):
        if not view.takes_rejections:
            continue
        floor = floors.get(view.name, 0)
        mine = [r for r in prepared.rejections if r.seq > floor]
        if mine:
            vb: Any = view.new_batch()
            for r in mine:
                vb.add_rejection(r, await stored_at(r.seq))
            prepared.batches[i] = (view, vb)


def _without_content_of_deleted_threads(items: list[Item]) -> list[Item]:
    """Drop the events of a thread that come before its ``thread_deleted`` in the same
    batch (content that is gone: invariant 8), keeping the tombstone and anything after
    it. Thread events are on ``events.thread.<id>.<type>``; events of other aggregates
    that name the thread in their payload (canvases, usage) are the views' business.
    Events of earlier batches are removed by the views when they apply the tombstone."""
    cut: dict[bytes, int] = {}
    for seq, subject, _ in items:
        if subject.endswith(_DELETED) and subject.startswith(_THREAD):
            cut[subject[:len(subject) - len(_DELETED) + 1]] = seq
    if not cut:
        return items
    prefixes = tuple(cut)
    return [it for it in items if not it[1].startswith(prefixes)
            or it[0] >= cut[it[1][:it[1].rfind(b".") + 1]]]

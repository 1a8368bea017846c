"""The projector's screen: which events of a batch cannot be decoded (poison, invariant 11).

Every event passes the screen before any view sees it. The screen is a function of the
event alone (its subject and bytes), never of the batch it arrived in or of the views'
state, so a rebuild rejects exactly the same events with the same error text. An event is
rejected when

1. its type (the subject's last token) is not in the event catalogue;
2. its bytes are not valid UTF-8;
3. it is not a JSON object whose ``data`` is an object (the envelope's shape; the type
   the views use is the subject's).

Cost (measured, 2 cores, 30,000-event batches): nothing per event on a clean batch. 1 is
a set difference over the batch's distinct types; 2 is the Arrow cast the projector does
anyway (only a failed cast looks at single events); 3 is two Arrow kernels (``starts_with
'{'``, ``ends_with '}}'``) and a ``json.loads`` of the few payloads failing them. Parsing
every payload was measured too expensive: full pydantic validation ~23 us per event,
``json.loads`` ~5-19 us, DuckDB ``json_type(payload, '$.data')`` ~0.5 us (8 % of the
paired rebuild benchmark, competing with the writer lanes for the cores). So a payload
passing the cheap test but malformed, and data a view cannot apply (a field of the
wrong type, a bad timestamp), are left to the projector's bisection fallback
(:mod:`projections.projector`): the views' own parse fails on them.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from projections.feed import Item

RAW_PREFIX = 256
"""Bytes of a rejected payload kept (escaped) in ``rejected_events.raw_prefix``."""
ERROR_MAX = 1000
"""Characters of an error text kept."""


@dataclass(frozen=True)
class Rejection:
    """One poison event: what the ``rejected_events`` view stores."""

    seq: int
    subject: str
    type: str | None
    error: str
    raw_prefix: str
    raw_bytes: int

    @classmethod
    def of(cls, item: Item, error: str, *, known_type: bool = True) -> Rejection:
        seq, subject, payload = item
        token = subject[subject.rfind(b".") + 1:].decode("utf-8", "backslashreplace")
        return cls(seq, subject.decode("utf-8", "backslashreplace"),
                   token if known_type else None, error[:ERROR_MAX],
                   payload[:RAW_PREFIX].decode("utf-8", "backslashreplace"), len(payload))


def screen_python(items: list[Item], types: list[bytes], known: Collection[bytes]
                  ) -> dict[int, Rejection]:
    """Checks 1 and 2 (see the module docstring) by index into ``items``."""
    out: dict[int, Rejection] = {}
    unknown = set(types).difference(known)
    if unknown:
        for i, t in enumerate(types):
            if t in unknown:
                name = t.decode(errors="replace")
                out[i] = Rejection.of(items[i], f"unknown event type {name!r}",
                                      known_type=False)
    return out


def invalid_utf8(items: list[Item], skip: Collection[int]) -> dict[int, Rejection]:
    """Check 2 event by event (only after the batch's Arrow cast failed)."""
    out: dict[int, Rejection] = {}
    for i, item in enumerate(items):
        if i in skip:
            continue
        try:
            item[2].decode()
        except UnicodeDecodeError as exc:
            out[i] = Rejection.of(item, f"payload is not valid UTF-8: {exc}")
    return out


def screen_shape(seqs: list[int], payloads: pa.Array) -> dict[int, str]:
    """Check 3 over the batch's payloads (valid UTF-8): ``{seq: error}``.

    A payload starting with ``{`` and ending with ``}}`` (the envelope writers put
    ``data`` last) passes at the cost of two Arrow kernels; only the others are parsed
    (``json.loads``) and rejected unless they are a JSON object with an object ``data``
    after all. A payload passing the cheap test yet malformed (``{"data": {"a": }}``)
    makes the views that parse it fail, and the projector's bisection rejects it.
    """
    good = pc.and_(pc.starts_with(payloads, "{"), pc.ends_with(payloads, "}}"))
    if pc.all(good).as_py():
        return {}
    out: dict[int, str] = {}
    for i in pc.indices_nonzero(pc.invert(good)).to_pylist():
        error = _shape_error(payloads[i].as_py())
        if error is not None:
            out[seqs[i]] = error
    return out


def _shape_error(payload: str) -> str | None:
    try:
        env = json.loads(payload)
    except ValueError as exc:
        return f"payload is not JSON: {exc}"
    if not isinstance(env, dict):
        return f"envelope is a JSON {_kind(env)}, not an object"
    data = env.get("data", _MISSING)
    if isinstance(data, dict):
        return None
    what = "missing" if data is _MISSING else f"a JSON {_kind(data)}"
    return f"envelope 'data' is {what}, not an object"


_MISSING = object()


def _kind(value: object) -> str:
    return {list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            dict: "object", type(None): "null"}.get(type(value), type(value).__name__)

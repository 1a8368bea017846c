"""What a NATS KV bucket holds now, read from its stream: the dependable start of a watch.

nats-py's KV watcher puts its "initial values are in" marker (``None``) when the
consumer reports nothing undelivered and the client has processed nothing yet; under
load that happens while a stored value is delivered but not yet processed, so a reader
that trusts the marker can miss a key that exists (seen: a pending purge answered as
done). :func:`kv_snapshot` reads the bucket's stream instead: the subjects under the
filter, then each one's last message. Start the watcher first and apply its changes
after the snapshot: nothing is missed (a change between the two is seen by both: keep, per
key, the one with the higher revision).

Failure modes: NATS errors propagate; a key deleted or purged between the two reads is
absent from the result.
"""

from __future__ import annotations

from typing import NamedTuple

import nats.js.errors
from nats.js import JetStreamContext


class Stored(NamedTuple):
    value: bytes
    revision: int
    """The stream sequence of the value (what a watcher's entry calls ``revision``)."""


async def kv_snapshot(js: JetStreamContext, bucket: str, keys: str = ">"
                      ) -> dict[str, Stored]:
    """The live keys of ``bucket`` matching ``keys`` (a subject filter), their values
    and revisions; deleted and purged keys are left out."""
    stream, prefix = f"KV_{bucket}", f"$KV.{bucket}."
    info = await js.stream_info(stream, subjects_filter=prefix + keys)
    out: dict[str, Stored] = {}
    for subject in (info.state.subjects or {}):
        try:
            msg = await js.get_last_msg(stream, subject)
        except nats.js.errors.NotFoundError:
            continue
        op = (msg.headers or {}).get("KV-Operation")
        if op in ("DEL", "PURGE") or not msg.data:
            continue
        out[subject.removeprefix(prefix)] = Stored(msg.data, msg.seq or 0)
    return out

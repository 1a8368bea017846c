"""Live thread events for their users: ``live.<user_id>.thread.<thread_id>.<event_type>``.

Thread events live on ``events.thread.<thread_id>.<type>``, which names no user, and only
the service role may read the log. The relay follows the EVENTS stream's thread events
(an ordered consumer from the stream's end) and republishes each to its user's live
subject, where that user's own connection may subscribe (``threadlog.nats_auth``: a user
role subscribes to ``live.<self>.>`` only) and an app or operator connection may follow
everyone's. The message is the stored envelope; header ``Threadlog-Seq`` is its stream
sequence, so a subscriber can read anything it missed with a query's ``min_seq``.

Guarantees: an event reaches the live subject of the user its envelope names, and no
other user's; events without a user are not relayed. Live subjects are core NATS: a
subscriber that is offline misses events (the log and the queries are the record).

Failure modes: the ordered consumer recovers from gaps by itself (nats-py); an event whose
envelope cannot be read is skipped and logged. Run one relay per deployment (like the
scheduler): two relays deliver each event twice (same ``Threadlog-Seq``).
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import DeliverPolicy

from events.ids import check_token

log = logging.getLogger(__name__)

THREAD_EVENTS = "events.thread.>"
SEQ_HEADER = "Threadlog-Seq"


def live_thread_subject(user_id: str, thread_id: str, event_type: str) -> str:
    """``live.<user>.thread.<thread>.<type>``."""
    return f"live.{user_id}.thread.{thread_id}.{event_type}"


class LiveRelay:
    """Republishes thread events to their users' live subjects; ``await stop()``."""

    def __init__(self, nc: NATS, stream: str) -> None:
        self.nc = nc
        self.stream = stream
        self.relayed = 0
        self._sub: Subscription | None = None

    async def start(self) -> LiveRelay:
        self._sub = await self.nc.jetstream().subscribe(
            THREAD_EVENTS, stream=self.stream, ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW, cb=self._on_event)
        return self

    async def _on_event(self, msg: Msg) -> None:
        parts = msg.subject.split(".")
        if len(parts) != 4:
            return
        try:
            user = json.loads(msg.data).get("user_id")
            if not isinstance(user, str):
                return
            check_token(user, what="user_id")
        except Exception as exc:
            log.warning("live relay skipped %s: %s", msg.subject, exc)
            return
        headers: dict[str, Any] = {SEQ_HEADER: str(msg.metadata.sequence.stream)}
        await self.nc.publish(live_thread_subject(user, parts[2], parts[3]), msg.data,
                              headers=headers)
        self.relayed += 1

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

"""One core-NATS request served the way every threadlog subject is served.

:func:`answer` is the loop body of the services that subscribe with nats-py directly
(not through the FastStream broker): the workflow subjects, the context preview.

Guarantees: a request whose reply subject is not an inbox the caller may use
(:func:`events.identity.reply_allowed`) is dropped with a warning and never handled (a
reply aimed at a stream API or an event subject would make the service publish there);
whatever ``handle`` raises becomes the structured error reply of
:func:`events.replies.reply_for`; the reply is bounded by the connection's max payload
(``reply_too_large`` instead of a reply the server would refuse).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from events.identity import reply_allowed
from events.replies import Reply, bounded_reply_bytes, reply_for

Handle = Callable[[str, bytes], Awaitable[Reply]]


async def answer(msg: Any, handle: Handle, max_payload: int,
                 log: logging.Logger | None = None) -> None:
    """Handle the nats-py message ``msg`` with ``handle(subject, data)`` and respond."""
    if not reply_allowed(msg.reply, msg.subject):
        (log or logging.getLogger(__name__)).warning(
            "dropped %s: its reply subject %r is not an inbox", msg.subject, msg.reply)
        return
    try:
        reply = await handle(msg.subject, msg.data)
    except Exception as exc:
        reply = reply_for(exc, where=msg.subject)
    await msg.respond(bounded_reply_bytes(reply, max_payload))

"""Broker middlewares: size limits both ways, and turning every exception into an error reply.

Every request gets exactly one reply of the shape in ``events.replies``, built from any
exception by ``events.replies.reply_for`` (the one mapping): malformed JSON is
``invalid_json``, a schema violation ``invalid_input`` (with the failing fields), a
threadlog error its own code, anything unexpected ``internal`` (logged with traceback;
nothing else is logged). Bodies are decoded by ``events.decoding.faststream_decoder``
(strict JSON, bounded nesting) when the broker is built with it.

Size limits: a request body above ``max_bytes`` is ``payload_too_large`` before any
decoding; a reply whose encoding is above the connection's max payload (the server's
INFO, less :data:`HEADER_ALLOWANCE` for the reply's headers) is replaced by
``reply_too_large`` instead of being dropped (nats-py would refuse to send it and the
client would only time out). Any other publish that large raises ``payload_too_large``.
"""

from __future__ import annotations

import logging
from typing import Any

from faststream import BaseMiddleware, ExceptionMiddleware
from faststream.message.utils import encode_message
from faststream.response.publish_type import PublishType

from events import PayloadTooLarge
from events.identity import reply_allowed
from events.replies import reply_for, reply_too_large

log = logging.getLogger(__name__)

HEADER_ALLOWANCE = 1_024
"""Bytes kept for the headers FastStream sends with a reply (correlation id, content
type): the server counts them against its max payload, nats-py does not."""


def error_middleware() -> ExceptionMiddleware:
    """The broker's exception middleware: every exception becomes ``reply_for(exc)``."""
    mw = ExceptionMiddleware()

    @mw.add_handler(Exception, publish=True)
    async def _on_any(exc: Exception) -> dict[str, Any]:
        return reply_for(exc, where="a command or query subscriber").model_dump(mode="json")

    return mw


class ReplyGuard(BaseMiddleware):
    """Serves only requests whose reply subject is an inbox of their caller
    (``events.identity.reply_allowed``): any other reply subject (``events.>``,
    ``$JS.API.>``, ``$KV.>``, another user's inbox...) would make the service publish
    there on the requester's behalf. Such a request is dropped unserved
    and logged; a message without a reply subject is served as usual."""

    async def consume_scope(self, call_next: Any, msg: Any) -> Any:
        reply = getattr(msg, "reply_to", "")
        subject = getattr(getattr(msg, "raw_message", None), "subject", None)
        if reply and not reply_allowed(reply, subject):
            log.warning("dropped a request on %s: its reply subject %r is not an inbox "
                        "of its caller", subject, reply)
            msg.reply_to = ""  # FastStream would publish the (empty) result there
            return None
        return await call_next(msg)


def size_limit_middleware(max_bytes: int) -> type[BaseMiddleware]:
    """Refuse request bodies above ``max_bytes`` before any decoding, and replace replies
    above the connection's max payload by ``reply_too_large`` (see the module docstring)."""

    class SizeLimit(BaseMiddleware):
        async def consume_scope(self, call_next: Any, msg: Any) -> Any:
            size = len(msg.body or b"")
            if size > max_bytes:
                raise PayloadTooLarge(f"request body is {size} bytes; the limit is {max_bytes}",
                                      details={"size": size, "limit": max_bytes})
            return await call_next(msg)

        async def publish_scope(self, call_next: Any, cmd: Any) -> Any:
            limit = self._reply_limit()
            if limit is not None and cmd.body is not None:
                size = len(encode_message(cmd.body, None)[0])
                if size > limit:
                    if cmd.publish_type is not PublishType.REPLY:
                        raise PayloadTooLarge(
                            f"message is {size} bytes; the limit is {limit}",
                            details={"size": size, "limit": limit})
                    cmd.body = reply_too_large(size, limit).model_dump(mode="json")
            return await call_next(cmd)

        def _reply_limit(self) -> int | None:
            broker = self.context.get("broker")
            conn = getattr(broker, "_connection", None)
            max_payload = getattr(conn, "max_payload", None)
            if not isinstance(max_payload, int) or max_payload <= 0:
                return None
            return max_payload - HEADER_ALLOWANCE

    return SizeLimit

"""``Client``: publish commands and queries over NATS request/reply and unwrap replies.

Every method returns the reply's result and the stream sequence (``Result.seq``) of the
last event it appended, which a query can pass as ``min_seq`` to read its own writes.
Errors come back as :class:`ThreadlogError` with the reply's code. No handler running
means an immediate ``unavailable`` error: commands are never silently queued.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS

from events import ThreadlogError, Unavailable, new_id
from events.replies import Reply

from handlers import subjects


@dataclass(frozen=True)
class Result:
    value: Any
    seq: int | None


class Client:
    def __init__(self, nc: NATS, *, user_id: str, timeout: float = 10.0) -> None:
        self.nc = nc
        self.user_id = user_id
        self.timeout = timeout

    async def request(self, subject: str, payload: dict[str, Any],
                      timeout: float | None = None) -> Result:
        """Send one request; raise the reply's error as a :class:`ThreadlogError`."""
        try:
            msg = await self.nc.request(subject, json.dumps(payload).encode(),
                                        timeout=timeout or self.timeout)
        except nats.errors.NoRespondersError:
            raise Unavailable(f"no handler is serving {subject!r}",
                              details={"subject": subject}) from None
        except nats.errors.TimeoutError:
            raise ThreadlogError(f"no reply on {subject!r} in {timeout or self.timeout}s",
                                 code="timeout", details={"subject": subject}) from None
        reply = Reply.model_validate_json(msg.data)
        return Result(reply.unwrap(), reply.seq)

    async def command(self, subject: str, command_id: str | None = None,
                      **fields: Any) -> Result:
        body = {"command_id": command_id or new_id(), "user_id": self.user_id, **fields}
        return await self.request(subject, {k: v for k, v in body.items() if v is not None})

    async def create_thread(self, *, title: str | None = None, summary: str | None = None,
                            thread_id: str | None = None, metadata: dict[str, Any] | None = None,
                            command_id: str | None = None) -> Result:
        return await self.command(subjects.CREATE_THREAD, command_id, title=title,
                                  summary=summary, thread_id=thread_id, metadata=metadata)

    async def update_thread(self, thread_id: str, *, command_id: str | None = None,
                            **changes: Any) -> Result:
        return await self.command(subjects.UPDATE_THREAD, command_id, thread_id=thread_id,
                                  **changes)

    async def save_messages(self, thread_id: str, messages: list[dict[str, Any]], *,
                            command_id: str | None = None) -> Result:
        return await self.command(subjects.SAVE_MESSAGES, command_id, thread_id=thread_id,
                                  messages=messages)

    async def save_message(self, thread_id: str, role: str, content: Any, *,
                           command_id: str | None = None, **extra: Any) -> Result:
        return await self.save_messages(thread_id, [{"role": role, "content": content, **extra}],
                                        command_id=command_id)

    async def delete_thread(self, thread_id: str, *, command_id: str | None = None) -> Result:
        return await self.command(subjects.DELETE_THREAD, command_id, thread_id=thread_id)

    async def query(self, subject: str, *, min_seq: int | None = None, **fields: Any) -> Result:
        body = {"user_id": self.user_id, **fields}
        if min_seq is not None:
            body["min_seq"] = min_seq
        return await self.request(subject, body)

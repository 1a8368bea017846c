"""``Client``: publish commands and queries over NATS request/reply and unwrap replies.

Every method returns the reply's result and the stream sequence (``Result.seq``) of the
last event it appended, which a query can pass as ``min_seq`` to read its own writes.
Errors come back as :class:`ThreadlogError` with the reply's code. No handler running
means an immediate ``unavailable`` error: commands are never silently queued.

A generation's error (``generate_text``, ``generate_object``, a ``stream_text`` result)
names its failed message in ``details``: ``message_id`` and ``seq`` (the stream sequence
of the message's ``failed`` finalization), so ``query("query.messages.list",
thread_id=..., min_seq=err.details["seq"])`` reads it back with its ``error`` and
``error_code``. Refusals before anything was saved (budget, unknown agent, foreign
thread, invalid input) carry neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS

from events import ThreadlogError, Unavailable, new_id
from events.connection import NatsEndpoint
from events.identity import USER_PLACEHOLDER, USER_SCOPED_ROOTS, for_user
from events.replies import Reply
from handlers import subjects
from handlers.streaming import delta_subject

NO_RESPONDER_RETRIES = (0.005, 0.02, 0.05)
"""Pauses before re-sending a request that reached no handler (about 75 ms in all)."""
GENERATION_WAIT_MARGIN_S = 5.0
"""Waited for a generation's reply beyond its deadline (the handler stops it at the
deadline, then finalizes the message and replies)."""


@dataclass(frozen=True)
class Result:
    value: Any
    seq: int | None


class Client:
    """Commands and queries for one user over a NATS connection.

    Subjects name the user (``cmd.<user_id>.<name>``, ``query.<user_id>.<name>``): the
    client fills in ``user_id`` in subject templates (``handlers.subjects``) and in the
    short forms ``cmd.<name>`` / ``query.<name>``; ``ops.*`` subjects (operators) are sent
    as they are. On a *user*-role connection the server lets only the connection's own
    user through; an app, operator or service connection may act for any user.
    """

    def __init__(self, nc: NATS, *, user_id: str, timeout: float = 10.0,
                 generation_deadline_s: float | None = None) -> None:
        self.nc = nc
        self.user_id = user_id
        self.timeout = timeout
        self.generation_deadline_s = generation_deadline_s
        """The agents' default generation deadline, when the caller knows it: a
        generation without its own ``deadline_s`` is waited for this long plus
        ``GENERATION_WAIT_MARGIN_S`` (without either, ``6 x timeout``)."""

    def generation_wait(self, body: Mapping[str, Any]) -> float:
        """Seconds to wait for the reply of the generation ``body``: its ``deadline_s``
        (or ``generation_deadline_s``) plus a margin, else ``6 x timeout``."""
        deadline = body.get("deadline_s") or self.generation_deadline_s
        if deadline is None:
            return self.timeout * 6
        return float(deadline) + GENERATION_WAIT_MARGIN_S

    @classmethod
    async def connect(cls, servers: str | list[str] | NatsEndpoint, *,
                      creds: str | Path | None = None, user_id: str | None = None,
                      timeout: float = 10.0, generation_deadline_s: float | None = None,
                      **options: Any) -> Client:
        """Connect with a credentials file (``threadlog credentials issue``). A *user*
        credential acts only as itself (``user_id`` defaults to its name); an app,
        operator or service credential names the user it acts for with ``user_id``.
        ``await client.close()`` when done."""
        endpoint = servers if isinstance(servers, NatsEndpoint) \
            else NatsEndpoint.of(servers, creds)
        cred = endpoint.credentials
        who = user_id or (cred.name if cred is not None and cred.role == "user" else None)
        if not who:
            raise ValueError("user_id is required unless the credential is a user's")
        nc = await endpoint.connect(**options)
        return cls(nc, user_id=who, timeout=timeout,
                   generation_deadline_s=generation_deadline_s)

    async def close(self) -> None:
        """Close the connection (for clients made by :meth:`connect`)."""
        await self.nc.close()

    def subject_for(self, subject: str) -> str:
        """``subject`` acting for this client's user (see the class docstring)."""
        if USER_PLACEHOLDER in subject:
            return for_user(subject, self.user_id)
        root, _, rest = subject.partition(".")
        if root in USER_SCOPED_ROOTS:
            return f"{root}.{self.user_id}.{rest}"
        return subject

    async def request(self, subject: str, payload: dict[str, Any],
                      timeout: float | None = None) -> Result:
        """Send one request; raise the reply's error as a :class:`ThreadlogError`."""
        subject = self.subject_for(subject)
        data = json.dumps(payload).encode()
        try:
            for pause in (*NO_RESPONDER_RETRIES, None):
                try:
                    msg = await self.nc.request(subject, data, timeout=timeout or self.timeout)
                    break
                except nats.errors.NoRespondersError:
                    # Nobody received it, so a retry cannot double-apply; the server can
                    # briefly report no interest while subscriptions change.
                    if pause is None:
                        raise Unavailable(f"no handler is serving {subject!r}",
                                          details={"subject": subject}) from None
                    await asyncio.sleep(pause)
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

    async def delete_thread(self, thread_id: str, *, command_id: str | None = None,
                            wait: bool = True) -> Result:
        """Delete the thread; ``wait=False`` replies once the thread is tombstoned and
        purges in the background (``deletions_pending`` tells when it is done)."""
        return await self.command(subjects.DELETE_THREAD, command_id, thread_id=thread_id,
                                  wait=None if wait else False)

    async def deletions_pending(self, thread_id: str | None = None, *,
                                wait_s: float = 0.0) -> Result:
        """Purges still owed by this user's asynchronous deletions (of ``thread_id``
        only, if given), after waiting up to ``wait_s`` seconds for them to finish:
        ``{pending: [...], done}``."""
        return await self.request(subjects.PENDING_DELETIONS, {
            "command_id": new_id(), "user_id": self.user_id, "wait_s": wait_s,
            **({"thread_id": thread_id} if thread_id else {})},
            timeout=self.timeout + wait_s)

    def _generate_body(self, agent: str, thread_id: str, prompt: str | None,
                       prompt_message_id: str | None, command_id: str | None,
                       **extra: Any) -> dict[str, Any]:
        body = {"command_id": command_id or new_id(), "user_id": self.user_id, "agent": agent,
                "thread_id": thread_id, "prompt": prompt,
                "prompt_message_id": prompt_message_id, **extra}
        return {k: v for k, v in body.items() if v is not None}

    async def generate_text(self, agent: str, thread_id: str, prompt: str | None = None, *,
                            prompt_message_id: str | None = None,
                            command_id: str | None = None, **extra: Any) -> Result:
        """Run ``agent`` on ``prompt`` (or an existing ``prompt_message_id``); the result
        has ``text``, ``message_id``, ``usage``... (see ``GenerationResult``)."""
        body = self._generate_body(agent, thread_id, prompt, prompt_message_id, command_id,
                                   **extra)
        return await self.request(subjects.GENERATE, body, timeout=self.generation_wait(body))

    async def generate_object(self, agent: str, thread_id: str, prompt: str,
                              schema: dict[str, Any], **extra: Any) -> Result:
        """Like ``generate_text`` with ``output_schema`` (a JSON schema, e.g. a pydantic
        model's ``model_json_schema()``): ``result.value['object']`` is valid for it.

        The handler reads the answer's JSON (a Markdown code fence is stripped), checks it
        against the schema, and on errors makes one repair call showing the model its
        answer and the errors. Errors: ``invalid_input`` for a schema that is not a valid
        JSON schema (nothing saved); ``invalid_model_output`` when the repaired answer is
        still invalid (``details``: ``errors``, ``first_errors``, ``output``,
        ``message_id``, ``seq``)."""
        return await self.generate_text(agent, thread_id, prompt, output_schema=schema, **extra)

    def stream_text(self, agent: str, thread_id: str, prompt: str | None = None, *,
                    prompt_message_id: str | None = None, command_id: str | None = None,
                    deltas_stream: str = "DELTAS", **extra: Any) -> TextStream:
        """``async for text in client.stream_text(...)``; then ``.result``."""
        body = self._generate_body(agent, thread_id, prompt, prompt_message_id, command_id,
                                   stream=True, **extra)
        return TextStream(self, body, thread_id, deltas_stream)

    async def decide_approval(self, thread_id: str, tool_call_id: str, approved: bool, *,
                              reason: str | None = None, command_id: str | None = None
                              ) -> Result:
        """Approve or deny a paused tool call; resumes the generation when all are decided."""
        return await self.command(subjects.APPROVAL, command_id, thread_id=thread_id,
                                  tool_call_id=tool_call_id, approved=approved, reason=reason)

    async def stream_object(self, agent: str, thread_id: str, prompt: str,
                            schema: dict[str, Any], **extra: Any) -> AsyncIterator[dict[str, Any]]:
        """Partial objects as the JSON streams in (each a superset of the previous one);
        the last one yielded is the validated object of the finished generation."""
        from handlers.llm.structured_output import partial_object

        stream = self.stream_text(agent, thread_id, prompt, output_schema=schema, **extra)
        text, last = "", None
        async for delta in stream:
            text += delta
            partial = partial_object(text)
            if partial is not None and partial != last:
                last = partial
                yield partial
        assert stream.result is not None
        final = stream.result.value["object"]
        if final != last:
            yield final

    async def abort(self, thread_id: str, message_id: str, *, reason: str | None = None,
                    command_id: str | None = None) -> Result:
        """Stop the generation of the pending ``message_id``, whichever handler process
        runs it (``stopped_by: owner``); a pending message nobody runs is finalized as
        failed (``stopped_by: abort``). A finished message is a ``conflict``."""
        return await self.command(subjects.ABORT, command_id, thread_id=thread_id,
                                  message_id=message_id, reason=reason)

    async def delete_user_data(self, *, command_id: str | None = None,
                               wait: bool = True) -> Result:
        """Delete all of this user's threads, messages and canvases (usage stays);
        ``wait=False`` replies at once and deletes them in the background."""
        return await self.command(subjects.DELETE_USER_DATA, command_id,
                                  wait=None if wait else False)

    async def query(self, subject: str, *, min_seq: int | None = None, **fields: Any) -> Result:
        body = {"user_id": self.user_id, **fields}
        if min_seq is not None:
            body["min_seq"] = min_seq
        return await self.request(subject, body)


class TextStream:
    """Text deltas of one generation as they are produced; ``result`` when done."""

    def __init__(self, client: Client, body: dict[str, Any], thread_id: str,
                 deltas_stream: str) -> None:
        self._client = client
        self._body = body
        self._thread_id = thread_id
        self._stream = deltas_stream
        self.result: Result | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        nc = self._client.nc
        gen_id = self._body["command_id"]
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        async def on_chunk(msg: Any) -> None:
            chunk = json.loads(msg.data)
            if chunk.get("generation_id") == gen_id:
                await queue.put(chunk)

        sub = await nc.subscribe(delta_subject(self._client.user_id, self._thread_id, "*"),
                                 cb=on_chunk)
        task = asyncio.ensure_future(self._client.request(
            subjects.GENERATE, self._body, timeout=self._client.generation_wait(self._body)))
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            done = False
            while True:
                chunk = await queue.get()
                if chunk is None:
                    break
                done = done or bool(chunk.get("done"))
                if chunk.get("text"):
                    yield chunk["text"]
            if not done and _generation_ran(task):
                for chunk in await _drain(queue, DELTA_DRAIN_S):
                    if chunk.get("text"):
                        yield chunk["text"]
            self.result = await task
        finally:
            await sub.unsubscribe()


DELTA_DRAIN_S = 2.0
"""How long a stream waits, after the reply, for the last text chunks (up to the chunk
marked ``done``) of a generation that ran. The handler publishes them before it replies,
but the reply (resolved as soon as it is read) can overtake their subscription's callback."""


def _generation_ran(task: asyncio.Future[Result]) -> bool:
    """Whether the generation's steps ran (so its delta writer ends with a ``done``
    chunk): a success, or an error naming the failed message."""
    if task.cancelled():
        return False
    exc = task.exception()
    return exc is None or (isinstance(exc, ThreadlogError) and "message_id" in exc.details)


async def _drain(queue: asyncio.Queue[dict[str, Any] | None], wait_s: float
                 ) -> list[dict[str, Any]]:
    """The chunks arriving within ``wait_s``, up to and including the ``done`` one."""
    out: list[dict[str, Any]] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(wait_s):
            while True:
                chunk = await queue.get()
                if chunk is None:
                    continue
                out.append(chunk)
                if chunk.get("done"):
                    break
    return out

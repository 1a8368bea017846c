"""The playground's NATS side: one connection per playground process, with the
credentials it was started with, and nothing the connection may not do itself.

Every request the page makes becomes one NATS request on a subject of the trust boundary
(``cmd.<u>.*``, ``query.<u>.*``, ``ops.*``); live data is a core NATS subscription to
``live.<u>.>``. The playground holds no privilege of its own: what the credential's role
allows (``threadlog.nats_auth.ROLE_PERMISSIONS``) is what the page can see and do.

Guarantees
- A request the NATS server refuses (a *permissions violation* on publish) fails at once
  with ``forbidden`` naming the subject, instead of waiting out the timeout: the server's
  asynchronous error is matched to the waiting request by subject.
- A live subscription the server refuses delivers nothing (and its violation is logged);
  no data of another user ever reaches the page through a user-role connection.
- Every reply is returned in threadlog's one shape ``{ok, result | error, seq}``.

Failure modes: ``unavailable`` (no handler serves the subject), ``timeout`` (no reply in
time), ``forbidden`` (refused by the server), and the replies' own error codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS

from events.connection import NatsEndpoint
from events.errors import Forbidden

log = logging.getLogger(__name__)

REFUSAL_GRACE_S = 0.2
"""How long a live subscription waits, after the server's PONG, for a refusal whose
error callback has not run yet (the stream's ``ready`` comes this much later)."""
_VIOLATION = re.compile(r'permissions violation for (publish|subscription) to "([^"]+)"', re.I)
NO_RESPONDER_RETRIES = (0.005, 0.02, 0.05)
LIVE_QUEUE_LIMIT = 10_000
"""Live messages buffered per page subscriber; a page that falls this far behind is
sent a ``lagged`` event and disconnected (it reconnects and reloads)."""


@dataclass(frozen=True)
class Identity:
    """Who the playground connects as: the credential's role and name."""

    role: str
    name: str

    @property
    def is_operator(self) -> bool:
        return self.role in ("operator", "service")

    @property
    def can_command(self) -> bool:
        """Whether ``cmd.<u>.agent.*`` etc. are in the role's publish allow-list."""
        return self.role in ("user", "app", "service")

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "name": self.name, "operator": self.is_operator,
                "can_command": self.can_command}


@dataclass
class _Waiters:
    by_subject: dict[str, list[asyncio.Future[None]]] = field(default_factory=dict)


def error_reply(code: str, message: str, **details: Any) -> dict[str, Any]:
    """A reply in threadlog's error shape."""
    return {"ok": False, "error": {"code": code, "message": message, "details": details}}


class Bridge:
    """One NATS connection; ``await start()``, ``await close()``."""

    def __init__(self, endpoint: NatsEndpoint, *, timeout: float = 10.0,
                 identity: Identity | None = None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        cred = endpoint.credentials
        self.identity = identity or Identity(cred.role if cred else "service",
                                             cred.name if cred else "")
        self.nc: NATS | None = None
        self._waiters = _Waiters()
        self.violations: list[str] = []
        """The server's permission violations for this connection, oldest first."""
        self._violation = asyncio.Event()

    async def start(self) -> Bridge:
        self.nc = await self.endpoint.connect(error_cb=self._on_error,
                                              max_reconnect_attempts=-1)
        return self

    async def close(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()

    async def _on_error(self, exc: Exception) -> None:
        text = str(exc)
        m = _VIOLATION.search(text)
        if m is None:
            log.warning("playground NATS connection: %s", text)
            return
        self.violations.append(text)
        self._violation.set()
        log.info("refused by the NATS server: %s", text)
        for fut in self._waiters.by_subject.pop(m.group(2), []):
            if not fut.done():
                fut.set_result(None)

    async def refused(self, subject: str, timeout: float = 5.0) -> str:
        """Wait (bounded) until the server has refused ``subject`` for this connection;
        the violation's text (``TimeoutError`` if it never comes)."""
        async def seen() -> str:
            while True:
                for v in self.violations:
                    if f'"{subject}"' in v:
                        return v
                self._violation.clear()
                await self._violation.wait()
        return await asyncio.wait_for(seen(), timeout)

    async def request(self, subject: str, body: dict[str, Any],
                      timeout: float | None = None) -> dict[str, Any]:
        """The reply to one request (a dict in threadlog's reply shape), never raising
        for refusals, timeouts or missing handlers."""
        assert self.nc is not None, "start() the bridge first"
        refused: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.by_subject.setdefault(subject, []).append(refused)
        try:
            return await self._request(subject, json.dumps(body).encode(),
                                       timeout or self.timeout, refused)
        finally:
            waiting = self._waiters.by_subject.get(subject, [])
            if refused in waiting:
                waiting.remove(refused)
                if not waiting:
                    self._waiters.by_subject.pop(subject, None)

    async def _request(self, subject: str, data: bytes, timeout: float,
                       refused: asyncio.Future[None]) -> dict[str, Any]:
        assert self.nc is not None
        for pause in (*NO_RESPONDER_RETRIES, None):
            ask: asyncio.Future[Any] = asyncio.ensure_future(
                self.nc.request(subject, data, timeout=timeout))
            waiting: set[asyncio.Future[Any]] = {ask, refused}
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if ask not in done:
                ask.cancel()
                with contextlib.suppress(BaseException):
                    await ask
                return error_reply("forbidden", f"the NATS server refused {subject!r} for "
                                   f"this connection ({self.identity.role} "
                                   f"{self.identity.name!r})", subject=subject)
            try:
                msg = ask.result()
            except nats.errors.NoRespondersError:
                if pause is None:
                    return error_reply("unavailable", f"no handler is serving {subject!r}",
                                       subject=subject)
                await asyncio.sleep(pause)
                continue
            except nats.errors.TimeoutError:
                return error_reply("timeout", f"no reply on {subject!r} in {timeout}s",
                                   subject=subject)
            try:
                reply: dict[str, Any] = json.loads(msg.data)
            except ValueError:
                return error_reply("internal", f"a reply on {subject!r} was not JSON")
            return reply
        raise AssertionError("unreachable")

    @contextlib.asynccontextmanager
    async def live(self, user_id: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A queue of the messages on ``live.<user_id>.>`` while the context is open:
        ``{subject, kind, thread_id, type | message_id, seq, data}``; ``{"lagged": true}``
        when the queue overflowed (the subscription then stops). Raises
        :class:`~events.errors.Forbidden` when the server refuses the subscription."""
        assert self.nc is not None
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(LIVE_QUEUE_LIMIT + 1)

        async def on_msg(msg: Any) -> None:
            if queue.qsize() >= LIVE_QUEUE_LIMIT:
                if queue.qsize() == LIVE_QUEUE_LIMIT:
                    queue.put_nowait({"lagged": True})
                return
            queue.put_nowait(live_item(msg.subject, msg.data, msg.headers))

        subject = f"live.{user_id}.>"
        seen = len(self.violations)
        refused: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.by_subject.setdefault(subject, []).append(refused)
        sub = await self.nc.subscribe(subject, cb=on_msg)
        # the server answers the SUB (with -ERR if refused) before the flush's PONG; the
        # error callback may still be on its way (a task of nats-py's read loop, late
        # under load): a refusal is waited for a moment after the PONG, bounded
        await self.nc.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(refused), REFUSAL_GRACE_S)
        waiting = self._waiters.by_subject.get(subject, [])
        if refused in waiting:
            waiting.remove(refused)
        if any(f'"{subject}"' in v for v in self.violations[seen:]):
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            raise Forbidden(f"the NATS server refused {subject!r} for this connection "
                            f"({self.identity.role} {self.identity.name!r})",
                            details={"subject": subject})
        try:
            yield queue
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


def live_item(subject: str, data: bytes, headers: dict[str, str] | None) -> dict[str, Any]:
    """One live message as the page receives it."""
    parts = subject.split(".")
    try:
        body: Any = json.loads(data)
    except ValueError:
        body = None
    item: dict[str, Any] = {"subject": subject, "user_id": parts[1] if len(parts) > 1 else None}
    if len(parts) >= 5 and parts[2] == "deltas":
        item.update(kind="delta", thread_id=parts[3], message_id=parts[4], data=body)
    elif len(parts) >= 5 and parts[2] == "thread":
        item.update(kind="thread", thread_id=parts[3], type=parts[4], data=body,
                    seq=int(headers["Threadlog-Seq"]) if headers and
                    headers.get("Threadlog-Seq", "").isdigit() else None)
    else:
        item.update(kind="other", data=body)
    return item

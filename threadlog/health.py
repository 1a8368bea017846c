"""Health of a running deployment, asked over NATS: every serving process answers.

``ops.health`` (core NATS, no queue group: every process that serves answers once) is
served by :class:`HealthResponder`, which the runtime starts with the handlers
(:func:`serve_health`). A reply (the one reply shape, ``events.replies``) describes one
process (:func:`process_health`):

- ``process``: ``pid``, ``hostname``, ``started_at``, ``uptime_s``;
- ``connection``: ``connected`` (every NATS connection of the process), ``server``,
  ``reconnects``, ``down_for_s`` (the current outage) and ``last_outage``
  (``{started_at, ended_at, duration_s}``, sampled every ``SAMPLE_EVERY_S``);
- ``handlers``: ``started`` (the broker's subscriptions active), ``subscriptions``,
  ``active``, ``parts`` (what else runs: projector, scheduler, live relay, workflows...);
- ``projector``: ``Projector.health().to_dict()`` when the process runs one, else null;
- ``ready`` and ``reasons``: ready only while it serves — connected, every subscription
  active, and its projector (if any) healthy (``projections.health.HEALTHY``).

:func:`ask_health` publishes one request with a reply inbox and gathers the answers:
up to ``timeout`` for the first, then until ``window`` passes with no new one.

Who may ask: operators (``ops.>``) and the service role; the server refuses a user's or
an app's publish. Replies go only to an operator or service inbox (``reply_allowed``).

Failure modes: no process answering in ``timeout`` is an empty list (the CLI says so and
exits 1); a reply that is not the reply shape is skipped (logged). A process whose
handlers are down but whose connection is up still answers (``ready: false``); a process
that cannot reach NATS cannot answer and is missing from the list (a supervisor sees
its exit, ``threadlog.watchdog``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client as NATS

from events.identity import reply_allowed
from events.replies import Reply

log = logging.getLogger(__name__)

HEALTH_SUBJECT = "ops.health"
SAMPLE_EVERY_S = 0.5
DEFAULT_TIMEOUT_S = 2.0
"""How long :func:`ask_health` waits for the first answer."""
DEFAULT_WINDOW_S = 0.3
"""How long it keeps gathering after the latest answer."""


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()


@dataclass
class Outage:
    started_at: float
    ended_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        end = self.ended_at if self.ended_at is not None else time.time()
        return {"started_at": _iso(self.started_at), "ended_at": _iso(self.ended_at),
                "duration_s": round(end - self.started_at, 3)}


class ConnectionMonitor:
    """Samples the connections every ``SAMPLE_EVERY_S`` and keeps the last outage."""

    def __init__(self, connections: Callable[[], Sequence[Any]]) -> None:
        self.connections = connections
        self.current: Outage | None = None
        self.last: Outage | None = None

    @property
    def connected(self) -> bool:
        conns = self.connections()
        return bool(conns) and all(getattr(c, "is_connected", False) for c in conns)

    def sample(self) -> None:
        if self.connected:
            if self.current is not None:
                self.current.ended_at = time.time()
                self.last, self.current = self.current, None
        elif self.current is None:
            self.current = Outage(time.time())

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_EVERY_S)  # a periodic sample, not a wait for state

    def to_dict(self) -> dict[str, Any]:
        self.sample()
        conns = self.connections()
        main = conns[0] if conns else None
        url = getattr(main, "connected_url", None)
        stats = getattr(main, "stats", None) or {}
        outage = self.current or self.last
        return {"connected": self.connected,
                "server": None if url is None else f"{url.scheme}://{url.netloc}",
                "reconnects": int(stats.get("reconnects", 0)),
                "down_for_s": 0.0 if self.current is None
                else round(time.time() - self.current.started_at, 3),
                "last_outage": None if outage is None else outage.to_dict()}


def handlers_health(broker: Any, parts: Sequence[str]) -> dict[str, Any]:
    subs = list(getattr(broker, "subscribers", []) or [])
    active = sum(1 for s in subs if getattr(s, "running", False)
                 and getattr(s, "subscription", None) is not None)
    return {"started": bool(subs) and active == len(subs), "subscriptions": len(subs),
            "active": active, "parts": list(parts)}


def readiness(connection: dict[str, Any], handlers: dict[str, Any],
              projector: dict[str, Any] | None) -> list[str]:
    """Why a process is not ready (empty: ready)."""
    reasons = []
    if not connection["connected"]:
        reasons.append(f"NATS unreachable for {connection['down_for_s']:.1f} s")
    if not handlers["started"]:
        reasons.append(f"{handlers['active']} of {handlers['subscriptions']} "
                       "subscriptions active")
    if projector is not None and not projector.get("healthy", False):
        why = f": {projector['last_error']}" if projector.get("last_error") else ""
        reasons.append(f"projector {projector.get('state')}{why}")
    return reasons


class HealthResponder:
    """Answers ``ops.health`` for one runtime (``threadlog.runtime.Runtime``)."""

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        self.started_at = time.time()
        self.monitor = ConnectionMonitor(self._connections)
        self._sub: Any = None
        self._task: asyncio.Task[None] | None = None

    def _connections(self) -> list[Any]:
        broker_conn = getattr(self.rt.broker, "_connection", None)
        return [c for c in (self.rt.nc, broker_conn) if c is not None]

    def report(self) -> dict[str, Any]:
        """This process's health (see the module docstring)."""
        connection = self.monitor.to_dict()
        parts = [name for name in self.rt.parts if name != "health"]
        handlers = handlers_health(self.rt.broker, parts)
        projector_obj = self.rt.parts.get("projector")
        projector = None
        if projector_obj is not None and hasattr(projector_obj, "health"):
            try:
                projector = projector_obj.health().to_dict()
            except Exception as exc:  # a health that cannot be read is not healthy
                projector = {"state": "unknown", "healthy": False,
                             "last_error": f"{type(exc).__name__}: {exc}"}
        reasons = readiness(connection, handlers, projector)
        return {"process": {"pid": os.getpid(), "hostname": socket.gethostname(),
                            "started_at": _iso(self.started_at),
                            "uptime_s": round(time.time() - self.started_at, 3)},
                "ready": not reasons, "reasons": reasons, "connection": connection,
                "handlers": handlers, "projector": projector}

    async def _on_request(self, msg: Any) -> None:
        if not reply_allowed(msg.reply, msg.subject):
            log.warning("dropped a health request: reply subject %r is not an operator "
                        "or service inbox", msg.reply)
            return
        try:
            body = self.report()
            reply = Reply.success(body)
        except Exception as exc:  # never leave the asker without an answer
            log.exception("health report failed")
            reply = Reply.success({"ready": False, "reasons": [f"health failed: {exc}"],
                                   "process": {"pid": os.getpid(),
                                               "hostname": socket.gethostname()}})
        with contextlib.suppress(Exception):
            await msg.respond(reply.model_dump_json().encode())

    async def start(self) -> HealthResponder:
        self._sub = await self.rt.nc.subscribe(HEALTH_SUBJECT, cb=self._on_request)
        self._task = asyncio.create_task(self.monitor.run())
        await self.rt.nc.flush()
        return self

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


@contextlib.asynccontextmanager
async def serve_health(rt: Any) -> AsyncIterator[HealthResponder]:
    """Answer ``ops.health`` for ``rt`` until exit (as ``rt.parts["health"]``)."""
    responder = await HealthResponder(rt).start()
    rt.parts["health"] = responder
    try:
        yield responder
    finally:
        rt.parts.pop("health", None)
        await responder.stop()


async def ask_health(nc: NATS, *, timeout: float = DEFAULT_TIMEOUT_S,
                     window: float = DEFAULT_WINDOW_S) -> list[dict[str, Any]]:
    """Every answer to one ``ops.health`` request, by (hostname, pid); empty when no
    process answered within ``timeout``."""
    inbox = nc.new_inbox()
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_reply(msg: Any) -> None:
        got.put_nowait(msg.data)

    sub = await nc.subscribe(inbox, cb=on_reply)
    answers: list[dict[str, Any]] = []
    try:
        await nc.publish(HEALTH_SUBJECT, b"{}", reply=inbox)
        await nc.flush()
        wait = timeout
        while True:
            try:
                data = await asyncio.wait_for(got.get(), wait)
            except TimeoutError:
                break
            wait = window
            try:
                value = Reply.model_validate_json(data).unwrap()
            except Exception as exc:
                log.warning("skipped a health reply that is not the reply shape: %s", exc)
                continue
            if isinstance(value, dict):
                answers.append(value)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return sorted(answers, key=lambda a: (str(a.get("process", {}).get("hostname")),
                                          int(a.get("process", {}).get("pid") or 0)))

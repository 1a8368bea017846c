"""Generations as durable runs: a JetStream work-queue stream holds every accepted
generation until it is finished, so a generation whose process died finishes by itself.

Shape (the thread's own events are the journal: ``handlers.agents.progress``)::

    handler: claim locally ─▶ publish gen.<EVENTS>.<agent>.<command id> ─▶ prompt+pending
             ─▶ run the steps in-process (the fast path) ─▶ reply
    worker (every handler process, one pull consumer per registered agent, shared):
      message of a generation this process runs ─▶ hold it (heartbeats) ─▶ ack when done
      message of a generation another live process runs ─▶ nak(delay=ack_wait)
      message nobody runs ─▶ generate(cmd) again: replay, continue at the first
                             incomplete step ─▶ ack

Guarantees
- Every generation accepted by ``cmd.agent.generate`` or ``Runtime.generate_text`` is
  in the queue (``Nats-Msg-Id`` = command id) before its prompt is appended: the queue
  publish is written to the connection first and the server processes a connection's
  messages in order. Its message is acked only once the generation is finished.
- Takeover: after a SIGKILL, the generation's message is redelivered ``ack_wait`` after
  its last heartbeat (or after the ``nak`` delay of a worker that saw it running) to a
  live worker of its agent, which asks every process whether one runs it (a core NATS
  request on ``sig.agent.gen.<EVENTS>.<command id>``, ``signal_timeout_s``) and, if none
  answers, resumes it. Bound: ``ack_wait`` + one fetch + ``signal_timeout_s``.
- One run per process per command id (a duplicate waits for the first); across
  processes the liveness signal keeps a second worker away. If a live owner fails to
  answer in time both may run the step in flight; the log's expected-version appends
  keep one result (the other stops with ``aborted``).
- A worker takes only generations of agents it registered (filter subject per agent).

Approval continuations (``handlers.agents.approvals``) are generations of this queue
too: ``Generate(command_id=<approval command id>)``, queued before the decision that
completes a paused step is appended. A deleted thread's queue messages are erased
(:func:`erase_queued`, from ``handlers.threads.deletion``): they hold the prompt.

Call-level and thread-level tools (``Runtime.generate_text(tools=...)``,
``Runtime.configure_thread``) travel as import references (``handlers.agents.tool_refs``):
the message names every tool of the generation that is not its agent's own
(``Threadlog-Tools``); a worker resumes it only if it resolves them all, else it naks
it (``unavailable``) for a worker that can. A generation with a tool that has no
reference (a closure, a tool of ``__main__``) is process-bound
(``Threadlog-Process-Bound``): once its process is gone the worker finalizes it as
``failed``, code ``worker_lost``, without calling the model or any tool. Callbacks
(``on_text``, the usage handler, an output model's validator) stay with their caller:
a generation resumed elsewhere uses the agent's usage handler and the command's
``output_schema``.

Failure modes: a queue publish failure fails the generation before anything is
appended; a worker error (NATS unavailable, a tool reference this process cannot
import) naks the message with a delay of ``ack_wait`` (a reference no worker can import
keeps the generation queued until one can, for ``tools_unavailable_after`` deliveries;
then it is failed, ``tool_unavailable``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from events import EventStore, ThreadlogError
from events.tasks import cancel_and_wait
from handlers.agents.commands import Generate

log = logging.getLogger(__name__)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class GenerationQueueConfig:
    """Limits of the generation queue and its worker. Tests shorten ``ack_wait``."""

    ack_wait: float = 30.0
    """Seconds after which the message of a dead process's generation is redelivered."""
    signal_timeout_s: float = 0.25
    max_concurrent: int = 1_000
    """Generations one worker holds or runs at once (the consumer's ``max_ack_pending``
    is this times 10: several processes share it)."""
    fetch_timeout: float = 1.0
    replicas: int = 1
    tools_unavailable_after: int = 20
    """Deliveries of a generation whose tool references no worker could import before
    it is failed (``tool_unavailable``): at the default ``ack_wait``, ten minutes of
    every worker lacking the module (a rolling deploy has that long to bring it)."""

    @property
    def heartbeat(self) -> float:
        return self.ack_wait / 3


DELIVERIES = "Threadlog-Deliveries"
"""Not a header on the wire: the worker adds it (the message's delivery count) to the
headers it hands to ``run``."""
CONTINUATION_HEADER = "Threadlog-Continuation"
CONTINUATION_TRIES = 3
"""Deliveries of an approval continuation whose decision is not found before it is
dropped: a process whose cached thread state predates the decision does not see it (the
queue's worker does not refresh the thread before resuming), another may; a decision
that never reached the log (its process died first) is dropped after these."""


def agent_token(agent: str) -> str:
    return agent if _TOKEN.match(agent) else "h" + hashlib.sha1(agent.encode()).hexdigest()[:16]


async def erase_queued(store: EventStore, command_ids: Collection[str]) -> int:
    """Erase the queue messages of the generations ``command_ids`` still in the
    ``<EVENTS>_GENERATIONS`` work queue (a deleted thread's: each holds its command, the
    prompt included), with the stream's erasing delete (the server overwrites the bytes;
    an ack only deletes). Returns how many were erased; idempotent.

    The worker holding such a message keeps running its generation, which stops at its
    next append to the deleted thread; its ack then finds nothing. Not covered: a
    generation queued after this call (its command is refused by the deleted thread, but
    its message holds the prompt until acked). Raises like :meth:`EventStore.erase_seqs`."""
    ids = set(command_ids)
    stream = f"{store.stream}_GENERATIONS"
    try:
        info = await store.js.stream_info(stream, subjects_filter=f"gen.{store.stream}.>")
    except NotFoundError:
        return 0
    subjects = [s for s in (info.state.subjects or {}) if s.rsplit(".", 1)[-1] in ids]
    erased = 0
    for _ in range(10):  # one message per subject, unless queued again past the window
        found = await store.last_seqs(stream, subjects)
        if not found:
            break
        erased += await store.erase_seqs(stream, found.values())
        subjects = list(found)
    return erased


class NotStarted(ThreadlogError):
    """A generation stopped before its first step could start (its process is shutting
    down: no slot will come; ``handlers.generation_limits``): nothing ran, so nothing is
    finalized. Its queue message is given back at once for another worker, and a client
    that re-sends the command later gets the result of that run."""

    code = "unavailable"


class GenerationQueue:
    """The ``<EVENTS>_GENERATIONS`` work-queue stream, the liveness signals, the worker."""

    def __init__(self, nc: NATS, events_stream: str, config: GenerationQueueConfig,
                 run: Callable[[Generate, Mapping[str, str]], Awaitable[Any]]) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.events_stream = events_stream
        self.stream = f"{events_stream}_GENERATIONS"
        self.prefix = f"gen.{events_stream}"
        self.config = config
        self.run = run
        """Runs a generation to its end (``Generator.generate`` from the queue), given
        the queue message's headers (what :meth:`enqueue` was given as ``headers``)."""
        self.local: dict[str, asyncio.Future[bool]] = {}
        """Generations this process runs now, by command id (their futures say, once
        done, whether the generation ended: ``False`` for :class:`NotStarted`)."""
        self.ended: OrderedDict[str, None] = OrderedDict()
        """Generations this process ran to their end lately (their messages are acked
        without replaying the thread)."""
        self._slots = asyncio.Semaphore(config.max_concurrent)
        self._tasks: set[asyncio.Task[None]] = set()
        self._subs: list[Any] = []

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self, agents: list[str]) -> GenerationQueue:
        try:
            await self.js.stream_info(self.stream)
        except NotFoundError:
            await self.js.add_stream(StreamConfig(
                name=self.stream, subjects=[f"{self.prefix}.>"],
                retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE,
                discard=DiscardPolicy.OLD, num_replicas=self.config.replicas,
                duplicate_window=120.0))
        self._subs.append(await self.nc.subscribe(f"sig.agent.gen.{self.events_stream}.>",
                                                  cb=self._on_ping))
        for name in agents:
            tok = agent_token(name)
            psub = await self.js.pull_subscribe(
                f"{self.prefix}.{tok}.*", durable=f"gen_{tok}", stream=self.stream,
                config=ConsumerConfig(
                    durable_name=f"gen_{tok}", ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=self.config.ack_wait, max_deliver=-1,
                    max_ack_pending=self.config.max_concurrent * 10,
                    filter_subject=f"{self.prefix}.{tok}.*"))
            self._subs.append(psub)
            self._spawn(self._fetch_loop(psub))
        return self

    async def stop(self) -> None:
        """Stop fetching; messages held or in flight are left to redelivery."""
        await cancel_and_wait(list(self._tasks))  # cancelled until they end (events.tasks)
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs = []

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- the owner's side -----------------------------------------------------------------
    def claim(self, cmd: Generate) -> asyncio.Future[bool] | None:
        """Register ``cmd`` as run here; ``None`` if this process already runs it."""
        if cmd.command_id in self.local:
            return None
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.local[cmd.command_id] = fut
        return fut

    def release(self, cmd: Generate, fut: asyncio.Future[bool], *,
                finished: bool = True) -> None:
        """The run of ``cmd`` here is over; ``finished=False``: it did not start
        (:class:`NotStarted`), so its queue message goes back to the queue, not acked."""
        if self.local.get(cmd.command_id) is fut:
            del self.local[cmd.command_id]
        if finished:
            self.ended[cmd.command_id] = None
            while len(self.ended) > 10_000:
                self.ended.popitem(last=False)
        if not fut.done():
            fut.set_result(finished)
        self._spawn(self._publish_done(cmd.command_id))

    async def _publish_done(self, command_id: str) -> None:
        with contextlib.suppress(Exception):
            await self.nc.publish(f"sig.agent.gendone.{self.events_stream}.{command_id}", b"")

    async def enqueue(self, cmd: Generate, *, continuation: bool = False,
                      headers: Mapping[str, str] | None = None) -> Awaitable[Any]:
        """Write the queue message now (before anything else on the connection); returns
        the pending acknowledgement to await before the generation's first model call.
        ``continuation``: an approval continuation (see :data:`CONTINUATION_TRIES`);
        ``headers``: more message headers, handed back to ``run`` by the worker."""
        subject = f"{self.prefix}.{agent_token(cmd.agent)}.{cmd.command_id}"
        headers = {**(headers or {}), "Nats-Msg-Id": cmd.command_id}
        if continuation:
            headers[CONTINUATION_HEADER] = "1"
        ack = asyncio.ensure_future(self.js.publish(
            subject, cmd.model_dump_json().encode(), stream=self.stream, headers=headers))
        await asyncio.sleep(0)  # let the publish write its message to the connection
        return ack

    async def running_elsewhere(self, command_id: str) -> bool:
        """Whether another live process answers that it runs ``command_id``."""
        try:
            await self.nc.request(f"sig.agent.gen.{self.events_stream}.{command_id}", b"",
                                  timeout=self.config.signal_timeout_s)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            return False
        return True

    async def wait_elsewhere(self, command_id: str, timeout: float) -> None:
        """Wait (at most ``timeout``) for the process running ``command_id`` to end it."""
        sub = await self.nc.subscribe(f"sig.agent.gendone.{self.events_stream}.{command_id}")
        try:
            if await self.running_elsewhere(command_id):
                with contextlib.suppress(nats.errors.TimeoutError, TimeoutError):
                    await sub.next_msg(timeout=timeout)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _on_ping(self, msg: Msg) -> None:
        if msg.subject.rsplit(".", 1)[-1] in self.local and msg.reply:
            await msg.respond(b"1")

    # -- the worker -----------------------------------------------------------------------
    async def _fetch_loop(self, psub: Any) -> None:
        while True:
            await self._slots.acquire()
            try:
                msgs = await psub.fetch(1, timeout=self.config.fetch_timeout)
            except (TimeoutError, nats.errors.TimeoutError):
                self._slots.release()
                continue
            except asyncio.CancelledError:
                self._slots.release()
                raise
            except Exception:
                self._slots.release()
                log.exception("fetching generations failed")
                await asyncio.sleep(self.config.fetch_timeout)
                continue
            for msg in msgs:
                self._spawn(self._process(msg)).add_done_callback(
                    lambda _: self._slots.release())

    async def _process(self, msg: Msg) -> None:
        beat = asyncio.ensure_future(self._heartbeat(msg))
        try:
            cmd = Generate.model_validate_json(msg.data)
            mine = self.local.get(cmd.command_id)
            if cmd.command_id in self.ended and mine is None:
                pass  # ended here: nothing to hold or resume
            elif mine is not None:
                if not await asyncio.shield(mine):  # it did not start here: next worker
                    beat.cancel()
                    await msg.nak()
                    return
            elif await self.running_elsewhere(cmd.command_id):
                beat.cancel()
                await msg.nak(delay=self.config.ack_wait)
                return
            else:
                log.info("resuming generation %s", cmd.command_id)
                try:
                    await self.run(cmd, {**(msg.headers or {}),
                                         DELIVERIES: str(msg.metadata.num_delivered)})
                except ThreadlogError as exc:  # failed and finalized: finished
                    if exc.code == "unavailable" or (
                            exc.code == "timeout" and "deadline_s" not in exc.details):
                        raise  # not finished: tried again later
                    if exc.code == "not_found" and (msg.headers or {}).get(
                            CONTINUATION_HEADER) and \
                            msg.metadata.num_delivered < CONTINUATION_TRIES:
                        beat.cancel()
                        await msg.nak(delay=self.config.ack_wait)
                        return
            beat.cancel()
            await msg.ack()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, ThreadlogError) and exc.code == "unavailable":
                log.warning("generation message failed in the worker; tried again later: %s",
                            exc.message)  # expected (a missing tool, a stopping process)
            else:
                log.exception("generation message failed in the worker; tried again later")
            with contextlib.suppress(Exception):
                await msg.nak(delay=self.config.ack_wait)
        finally:
            beat.cancel()

    async def _heartbeat(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat)
            with contextlib.suppress(Exception):
                await msg.in_progress()

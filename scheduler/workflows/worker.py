"""The worker: takes runs of the workflows it registered, executes them, lets go.

One durable pull consumer per registered (name, version) on the run queue, shared by
all workers with that registration. For each run message the worker reads the run's
journal, executes it (:mod:`runner`) while heartbeating the message
(``in_progress`` every ``ack_wait / 3``), and then acks it (finished and completion
recorded) or naks it with the delay to the run's next due time (suspended).

Guarantees
- Takeover: a run whose worker died (SIGKILL, lost connection) is redelivered
  ``ack_wait`` after its last heartbeat to any live worker of that workflow version, which
  replays the journal and continues at the first incomplete step, with no client action.
- Durable timers: a suspended run's message comes back at its due time (``nak`` delay;
  a wake replaces it earlier); early or repeated deliveries only re-check the journal.
- At most one execution of a run per worker process; across processes the run's
  expected version fences a stale owner (:class:`OwnershipLost`: it stops and leaves
  the message alone).

Failure modes: an error from ``on_complete`` or the store naks the message with a delay
of ``ack_wait`` (tried again later, logged); ``stop`` naks runs in flight so another
worker takes them at once (their step in flight runs again: at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import nats.errors
from nats.aio.msg import Msg

from events.envelope import utcnow
from events.store import EventStore
from events.tasks import cancel_and_wait
from scheduler.workflows.definition import WorkflowDefinition, Workflows
from scheduler.workflows.errors import OwnershipLost
from scheduler.workflows.execution import Execution, PersistHook, Suspended
from scheduler.workflows.launcher import Launcher
from scheduler.workflows.queue import RunQueue, WorkflowConfig
from scheduler.workflows.read import load_journal
from scheduler.workflows.runner import Runner

log = logging.getLogger(__name__)


class WorkflowWorker:
    def __init__(self, store: EventStore, workflows: Workflows,
                 config: WorkflowConfig | None = None, *, max_concurrent: int = 64,
                 fetch_timeout: float = 1.0, hook: PersistHook | None = None) -> None:
        self.store = store
        self.workflows = workflows
        self.config = config or WorkflowConfig()
        self.queue = RunQueue(store.nc.jetstream(), self.config)
        self.runner = Runner(workflows, Launcher(store, self.queue))
        self.hook = hook
        self.fetch_timeout = fetch_timeout
        self._slots = asyncio.Semaphore(max_concurrent)
        self._loops: list[asyncio.Task[None]] = []
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._subs: list[Any] = []

    async def start(self) -> WorkflowWorker:
        await self.queue.ensure()
        js = self.queue.js
        for d in self.workflows.definitions():
            cfg = self.config
            psub = await js.pull_subscribe(
                cfg.filter(d.name, d.version), durable=cfg.durable(d.name, d.version),
                stream=cfg.stream, config=self.queue.consumer_config(d.name, d.version))
            self._subs.append(psub)
            self._loops.append(asyncio.create_task(self._fetch_loop(psub, d)))
        return self

    async def stop(self) -> None:
        await cancel_and_wait([*self._loops, *self._runs.values()])  # (events.tasks)
        for psub in self._subs:
            with contextlib.suppress(Exception):
                await psub.unsubscribe()
        self._loops, self._subs = [], []

    async def __aenter__(self) -> WorkflowWorker:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _fetch_loop(self, psub: Any, d: WorkflowDefinition) -> None:
        while True:
            await self._slots.acquire()
            try:
                msgs = await psub.fetch(1, timeout=self.fetch_timeout)
            except (TimeoutError, nats.errors.TimeoutError):
                self._slots.release()
                continue
            except Exception:
                self._slots.release()
                log.exception("fetching runs of %s v%d failed", d.name, d.version)
                await asyncio.sleep(self.fetch_timeout)
                continue
            for msg in msgs:
                run_id = msg.subject.rsplit(".", 1)[-1]
                previous = self._runs.get(run_id)
                task = asyncio.create_task(self._process(msg, d, run_id, previous))
                self._runs[run_id] = task
                task.add_done_callback(self._on_done(run_id))

    def _on_done(self, run_id: str) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            self._slots.release()
            if self._runs.get(run_id) is task:
                del self._runs[run_id]

        return done

    async def _process(self, msg: Msg, d: WorkflowDefinition, run_id: str,
                       previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            with contextlib.suppress(BaseException):
                await previous
        beat = asyncio.create_task(self._heartbeat(msg))
        try:
            first_seq = int(json.loads(msg.data).get("first_seq") or 0)
            journal = await load_journal(self.store, run_id, first_seq)
            if journal.started is None:
                log.warning("run message for unknown run %s dropped", run_id)
                await msg.ack()
                return
            ex = Execution(self.store, journal, self.config, self.hook)
            out = await self.runner.run_once(ex, d)
            beat.cancel()
            if isinstance(out, Suspended):
                delay = (self.config.idle_recheck if out.wake_at is None
                         else (out.wake_at - utcnow()).total_seconds())
                await msg.nak(delay=max(0.0, delay))
            else:
                await msg.ack()
        except OwnershipLost:
            log.info("run %s has another owner: let go", run_id)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await msg.nak()
            raise
        except Exception:
            log.exception("run %s failed in the worker; tried again later", run_id)
            with contextlib.suppress(Exception):
                await msg.nak(delay=self.config.ack_wait)
        finally:
            beat.cancel()

    async def _heartbeat(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat)
            with contextlib.suppress(Exception):
                await msg.in_progress()

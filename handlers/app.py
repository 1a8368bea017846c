"""The FastStream app serving command subjects (see ``handlers.subjects``).

``build_handlers(...)`` registers the subscribers on a broker that the caller owns, so
``threadlog serve`` can run commands, queries and the scheduler on one connection. The
EVENTS stream is created by our own code (``EventStore.setup``), never by FastStream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from faststream import FastStream
from faststream.nats import NatsBroker

from events import EventStore
from handlers import subjects, thread_decisions
from handlers.agents.abort import AbortSignals
from handlers.agents.definition import AgentRegistry
from handlers.agents.generation import Generator
from handlers.billing.app import Billing
from handlers.canvas.schema import CanvasSchema
from handlers.canvas.service import CanvasService
from handlers.command_log import CommandLog
from handlers.commands import (
    CreateThread,
    DeleteThread,
    DeleteUserData,
    PendingDeletions,
    SaveMessages,
    UpdateThread,
)
from handlers.llm.usage_and_cost import ModelPrice
from handlers.middleware import error_middleware, size_limit_middleware
from handlers.pending_purges import PendingPurges
from handlers.runner import CommandRunner
from handlers.subjects import COMMAND_QUEUE
from handlers.thread_deletion import ThreadDeleter
from handlers.thread_state import ThreadStateCache


def make_broker(servers: str | list[str], *, max_command_bytes: int = 1_000_000,
                **kwargs: Any) -> NatsBroker:
    """A broker whose every reply has the threadlog shape (errors included)."""
    return NatsBroker(servers, middlewares=[error_middleware(),
                                            size_limit_middleware(max_command_bytes)],
                      **kwargs)


@dataclass
class Handlers:
    store: EventStore
    states: ThreadStateCache
    runner: CommandRunner
    generator: Generator
    billing: Billing
    canvas: CanvasService
    deleter: ThreadDeleter
    abort_signals: AbortSignals
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        """Stop listening for abort signals; let running purges finish (bounded)."""
        for close in reversed(self.closers):
            await close()


async def build_handlers(broker: NatsBroker, store: EventStore,
                         command_log: CommandLog | None,
                         agents: AgentRegistry | None = None, *,
                         spend_limit_usd: float | None = None,
                         prices: Mapping[str, ModelPrice] | None = None,
                         canvas_schema: CanvasSchema | None = None,
                         deltas_stream: str = "DELTAS") -> Handlers:
    """Register the thread, agent and billing command subscribers on ``broker``.

    Every generation first checks the user's budget (``budget_exceeded`` refuses it
    before anything is appended or the model is called).

    Starts following spend limits (``SpendLedger.watch_limits``) and listening for abort
    signals (``sig.agent.abort.>``) and resumes the purges
    of asynchronous deletions left pending (bucket ``<stream>_purges``); call
    ``Handlers.close()`` before closing the connection."""
    from handlers.agents.app import make_generator, register_agent_commands
    from handlers.billing import register_billing_commands
    from handlers.canvas import register_canvas_commands

    states = ThreadStateCache(store)
    runner = CommandRunner(store, states, command_log)
    canvas = register_canvas_commands(broker, runner, schema=canvas_schema)
    purges = await PendingPurges.open(store.js, f"{store.stream}_purges",
                                      replicas=store.spec.replicas)
    deleter = register_thread_commands(broker, runner, canvas, deltas_stream, purges)
    billing = register_billing_commands(broker, store, default_limit_usd=spend_limit_usd,
                                        prices=prices)
    generator = make_generator(runner, store.nc, agents or AgentRegistry())
    generator.canvas = canvas
    generator.check_budget = billing.guard.check_budget
    generator.append_usage = billing.ledger.append_usage
    signals = register_agent_commands(broker, generator)
    await signals.start(store.nc)
    await billing.ledger.watch_limits()
    handlers = Handlers(store, states, runner, generator, billing, canvas, deleter, signals,
                        [purges.close, signals.stop, billing.ledger.stop_watching])
    await deleter.resume()
    return handlers


def register_thread_commands(broker: NatsBroker, runner: CommandRunner,
                             canvas: CanvasService | None = None,
                             deltas_stream: str = "DELTAS",
                             purges: PendingPurges | None = None) -> ThreadDeleter:
    """Thread commands. Deleting a thread also purges its canvases (when ``canvas``);
    ``purges`` (the pending-purge records) enables asynchronous deletion."""

    @broker.subscriber(subjects.CREATE_THREAD, queue=COMMAND_QUEUE, title="cmd.thread.create",
                       description="Create a thread. Result: {thread_id}.")
    async def create_thread(body: CreateThread) -> dict[str, Any]:
        tid = thread_decisions.thread_id_for(body)
        reply = await runner.run(body, tid, thread_decisions.create_thread,
                                 thread_decisions.replay_thread_result)
        return reply.model_dump(mode="json")

    @broker.subscriber(subjects.UPDATE_THREAD, queue=COMMAND_QUEUE, title="cmd.thread.update",
                       description="Update a thread's title, summary, status or metadata.")
    async def update_thread(body: UpdateThread) -> dict[str, Any]:
        reply = await runner.run(body, body.thread_id, thread_decisions.update_thread,
                                 thread_decisions.replay_thread_result)
        return reply.model_dump(mode="json")

    @broker.subscriber(subjects.SAVE_MESSAGES, queue=COMMAND_QUEUE, title="cmd.messages.save",
                       description="Save messages to a thread. Result: ids, order, step_order.")
    async def save_messages(body: SaveMessages) -> dict[str, Any]:
        reply = await runner.run(body, body.thread_id, thread_decisions.save_messages,
                                 thread_decisions.replay_save_messages)
        return reply.model_dump(mode="json")

    deleter = ThreadDeleter(runner, canvas, deltas_stream, purges)

    @broker.subscriber(subjects.DELETE_THREAD, queue=COMMAND_QUEUE, title="cmd.thread.delete",
                       description="Delete a thread: its content is purged from the log "
                                   "(a content-free tombstone stays), its canvases and "
                                   "deltas too, and the projections drop its rows. "
                                   "wait=false: reply after the tombstone, purge in the "
                                   "background (resumed after a crash).")
    async def delete_thread(body: DeleteThread) -> dict[str, Any]:
        return (await deleter.delete_thread(body)).model_dump(mode="json")

    @broker.subscriber(subjects.DELETE_USER_DATA, queue=COMMAND_QUEUE, title="cmd.user.delete",
                       description="Delete every thread (messages, canvases) of the user. "
                                   "Usage and invoices stay; they hold no content. "
                                   "wait=false: reply at once, delete in the background.")
    async def delete_user_data(body: DeleteUserData) -> dict[str, Any]:
        return (await deleter.delete_user_data(body)).model_dump(mode="json")

    @broker.subscriber(subjects.PENDING_DELETIONS, queue=COMMAND_QUEUE,
                       title="cmd.deletion.pending",
                       description="Purges still owed by the user's asynchronous deletions "
                                   "(of one thread with thread_id), after waiting up to "
                                   "wait_s for them. Result: {pending, done}.")
    async def pending_deletions(body: PendingDeletions) -> dict[str, Any]:
        return (await deleter.pending(body)).model_dump(mode="json")

    return deleter


def make_app(broker: NatsBroker) -> FastStream:
    return FastStream(broker)

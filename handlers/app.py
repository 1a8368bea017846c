"""The FastStream app serving command subjects (see ``handlers.subjects``).

``build_handlers(...)`` registers the subscribers on a broker that the caller owns, so
``threadlog serve`` can run commands, queries and the scheduler on one connection. The
EVENTS stream is created by our own code (``EventStore.setup``), never by FastStream.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from faststream import FastStream
from faststream.nats import NatsBroker

from events import EventStore
from events.connection import NatsEndpoint
from events.decoding import faststream_decoder
from handlers.agents.abort import AbortSignals
from handlers.agents.definition import AgentRegistry
from handlers.agents.generation import Generator
from handlers.billing.app import Billing
from handlers.canvas.schema import CanvasSchema
from handlers.canvas.service import CanvasService
from handlers.command_log import CommandLog
from handlers.llm.usage_and_cost import ModelPrice
from handlers.middleware import ReplyGuard, error_middleware, size_limit_middleware
from handlers.runner import CommandRunner
from handlers.threads.deletion import ThreadDeleter
from handlers.threads.pending_purges import PendingPurges
from handlers.threads.state import ThreadStateCache

DEFAULT_CONCURRENCY = 64
"""Requests one subscriber serves at once in one process (``max_workers``)."""


class ThreadlogBroker(NatsBroker):
    """A ``NatsBroker`` whose core subscribers serve up to ``concurrency`` requests at once
    each (FastStream serves one at a time otherwise: one slow request would delay every
    other user's on the same subject). Per-aggregate order is the log's, not the
    subscriber's: appends carry expected versions."""

    def __init__(self, *args: Any, concurrency: int = DEFAULT_CONCURRENCY,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.concurrency = concurrency

    def subscriber(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("stream") is None and self.concurrency > 1:
            kwargs.setdefault("max_workers", self.concurrency)
        return super().subscriber(*args, **kwargs)


def make_broker(servers: str | list[str] | NatsEndpoint, *,
                max_command_bytes: int = 1_000_000,
                concurrency: int = DEFAULT_CONCURRENCY, **kwargs: Any) -> NatsBroker:
    """A broker whose every reply has the threadlog shape (errors included), whose bodies
    are decoded strictly and act for the subject's user (``events.decoding``), connecting
    with the endpoint's credentials."""
    endpoint = servers if isinstance(servers, NatsEndpoint) else NatsEndpoint.of(servers)
    return ThreadlogBroker(list(endpoint.servers), concurrency=concurrency,
                           middlewares=[ReplyGuard, error_middleware(),
                                        size_limit_middleware(max_command_bytes)],
                           decoder=faststream_decoder, **endpoint.options(), **kwargs)


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
    from handlers.agents.context_preview import ContextPreviewService
    from handlers.agents.llm_bridge import call_step
    from handlers.billing import register_billing_commands
    from handlers.canvas import register_canvas_commands
    from handlers.threads.app import register_thread_commands

    states = ThreadStateCache(store)
    runner = CommandRunner(store, states, command_log)
    canvas = register_canvas_commands(broker, runner, schema=canvas_schema)
    purges = await PendingPurges.open(store.js, f"{store.stream}_purges",
                                      replicas=store.spec.replicas)
    deleter = register_thread_commands(broker, runner, canvas, deltas_stream, purges)
    billing = register_billing_commands(broker, store, command_log=command_log,
                                        default_limit_usd=spend_limit_usd, prices=prices)
    generator = make_generator(runner, store.nc, agents or AgentRegistry())
    if prices:  # the recorded cost of each model call uses the same overrides as budgets
        generator.call_step = functools.partial(call_step, prices=prices)
    generator.canvas = canvas
    generator.check_budget = billing.guard.check_budget
    generator.append_usage = billing.ledger.append_usage
    signals = register_agent_commands(broker, generator)
    await signals.start(store.nc)
    # query.<u>.agent.context: the exact context a prompt would get, no model call
    preview = await ContextPreviewService(generator).start(store.nc)
    await billing.ledger.watch_limits()
    handlers = Handlers(store, states, runner, generator, billing, canvas, deleter, signals,
                        [purges.close, signals.stop, billing.ledger.stop_watching,
                         preview.stop])
    await deleter.resume()
    return handlers


def make_app(broker: NatsBroker) -> FastStream:
    return FastStream(broker)

"""Wiring: NATS (embedded or given), the event store, the command handlers, and the
optional projector and scheduler, started and stopped together.

``async with running(settings) as rt:`` gives a ready :class:`Runtime`; on exit every
part stops in reverse order and an embedded nats-server is stopped by its pid.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from faststream.nats import NatsBroker
from nats.aio.client import Client as NATS
from pydantic import BaseModel

from events import EventStore, EventStreamSpec, new_id
from events.connection import NatsEndpoint
from handlers import Client, CommandLog, build_handlers, make_broker
from handlers.agents.app import start_generation_queue
from handlers.agents.commands import Generate
from handlers.agents.definition import Agent, AgentRegistry, UsageHandler
from handlers.agents.durable import GenerationQueueConfig
from handlers.agents.generation import GenerationResult, ThreadOptions
from handlers.app import Handlers
from handlers.canvas.schema import CanvasSchema
from handlers.generation_limits import (
    GenerationLimits,
    SlotsConfig,
    open_generation_slots,
    register_generation_limit_commands,
)
from handlers.generation_limits import attach as attach_generation_slots
from handlers.llm.litellm_loader import warm_up
from handlers.llm.usage_and_cost import ModelPrice
from handlers.rate_limits import Limits, attach, open_rate_limiter, register_rate_limit_commands
from handlers.streaming import DeltaStreamSpec, ensure_delta_stream
from threadlog.app import App
from threadlog.embedded_nats import EmbeddedNats
from threadlog.gc_tuning import frozen_startup
from threadlog.health import serve_health
from threadlog.settings import Settings
from threadlog.watchdog import ConnectionWatchdog

log = logging.getLogger(__name__)

Part = Callable[["Runtime"], contextlib.AbstractAsyncContextManager[Any]]


@dataclass
class Runtime:
    settings: Settings
    urls: list[str]
    nc: NATS
    store: EventStore
    broker: NatsBroker
    handlers: Handlers
    embedded: EmbeddedNats | None = None
    endpoint: NatsEndpoint | None = None
    """The servers and the service credentials this runtime connects with."""
    parts: dict[str, Any] = field(default_factory=dict)
    app: App | None = None
    """The application ``running(..., app=)`` loaded (agents, workflows, canvas schema)."""
    watchdog: ConnectionWatchdog | None = None
    """Watches this runtime's NATS connections (``threadlog.watchdog``)."""

    def client(self, user_id: str) -> Client:
        return Client(self.nc, user_id=user_id, timeout=self.settings.request_timeout_s * 2)

    async def generate_text(self, agent: str, user_id: str, thread_id: str,
                            prompt: str | None = None, *, prompt_message_id: str | None = None,
                            tools: list[Any] | None = None,
                            usage_handler: UsageHandler | None = None,
                            on_text: Callable[[str], Awaitable[None]] | None = None,
                            output_model: type[BaseModel] | None = None,
                            command_id: str | None = None) -> GenerationResult:
        """Generate in this process with call-level tools, usage handler, a text callback
        and a pydantic output model (the command path takes only JSON). Same guarantees
        as ``cmd.agent.generate``.

        If this process dies, another worker of the agent finishes the generation
        (``handlers.agents.durable``) with these ``tools`` and the thread-level ones
        (``configure_thread``) when each is a ``@tool`` defined at module level in a
        module that worker can import (``handlers.agents.tool_refs``); a tool made in a
        function (a closure) or in ``__main__`` binds the generation to this process: it
        then fails with code ``worker_lost``. ``on_text``, ``usage_handler`` and
        ``output_model``'s validator belong to this caller and are not run after a
        takeover: the resumed run records usage with the agent's handler and checks the
        answer against the command's ``output_schema`` (the model's JSON schema) only."""
        cmd = Generate(command_id=command_id or new_id(), user_id=user_id, agent=agent,
                       thread_id=thread_id, prompt=prompt, prompt_message_id=prompt_message_id,
                       output_schema=output_model.model_json_schema() if output_model else None)
        res = await self.handlers.generator.generate(
            cmd, on_text=on_text, tools=tools, usage_handler=usage_handler,
            validate_object=output_model.model_validate if output_model else None)
        assert isinstance(res, GenerationResult)
        return res

    def configure_thread(self, thread_id: str, options: ThreadOptions) -> None:
        """Thread-level tools and usage handler (between call and agent level)."""
        self.handlers.generator.thread_options[thread_id] = options


@contextlib.asynccontextmanager
async def running(settings: Settings, *, extra_parts: list[Part] | None = None,
                  agents: list[Agent] | None = None,
                  canvas_schema: CanvasSchema | None = None,
                  prices: Mapping[str, ModelPrice] | None = None,
                  before_start: Callable[[Runtime], Awaitable[None]] | None = None,
                  app: App | None = None,
                  generation_queue: GenerationQueueConfig | None = None,
                  generation_slots: SlotsConfig | None = None
                  ) -> AsyncIterator[Runtime]:
    """Start everything; ``extra_parts`` (projector, scheduler...) are entered in order
    after the handlers are registered and before the broker starts. ``app``'s agents and
    canvas schema join the handlers and its workflows run in the workflows part
    (``threadlog.parts.workflows_part``, added when not among ``extra_parts``).
    ``generation_slots``: timings of the generation limit (with
    ``settings.generation_parallelism``; tests shorten ``ack_wait``)."""
    if app is not None:
        agents = [*app.agents, *(agents or [])]
        canvas_schema = canvas_schema or app.canvas_schema
        extra_parts = _with_workflows(extra_parts)
    async with contextlib.AsyncExitStack() as stack:
        embedded = None
        if settings.nats_urls:
            endpoint = NatsEndpoint.of(settings.nats_urls, settings.nats_creds)
        else:
            embedded = EmbeddedNats(settings.nats_store_dir, settings.nats_port,
                                    host=settings.nats_host,
                                    auth_dir=settings.auth_dir).start()
            stack.callback(embedded.stop)
            endpoint = embedded.endpoint
        urls = list(endpoint.servers)
        await endpoint.probe()
        nc = await endpoint.connect(name="threadlog", max_reconnect_attempts=-1)
        stack.push_async_callback(_stop_quietly, nc.close, "the NATS connection")
        spec = EventStreamSpec(name=settings.events_stream, replicas=settings.replicas,
                               duplicate_window_s=settings.duplicate_window_s)
        store = EventStore(nc, spec, timeout=settings.request_timeout_s)
        await store.setup()
        command_log = await CommandLog.open(store.js, f"{settings.events_stream}_commands",
                                            ttl_s=settings.duplicate_window_s,
                                            replicas=settings.replicas)
        stack.push_async_callback(command_log.drain)
        broker = make_broker(endpoint, max_command_bytes=settings.max_command_bytes,
                             concurrency=settings.handler_concurrency, logger=None,
                             max_reconnect_attempts=-1)
        await ensure_delta_stream(nc, DeltaStreamSpec(
            name=settings.deltas_stream, max_age_s=settings.deltas_max_age_s,
            replicas=settings.replicas))
        handlers = await build_handlers(broker, store, command_log, AgentRegistry(agents),
                                        spend_limit_usd=settings.spend_limit_usd,
                                        canvas_schema=canvas_schema, prices=prices,
                                        deltas_stream=settings.deltas_stream)
        stack.push_async_callback(handlers.close)
        # Rate limits (handlers.rate_limits): checked at the entry of the generate
        # subscriber; the shared state is the bucket <stream>_rate_limits.
        limiter = await open_rate_limiter(store.js, settings.events_stream, Limits(
            settings.rate_messages_per_minute, settings.rate_tokens_per_minute),
            replicas=settings.replicas)
        stack.push_async_callback(limiter.store.close)
        register_rate_limit_commands(broker, limiter)
        attach(handlers.generator, limiter)
        # Durable generations (handlers.agents.durable): the queue and its worker.
        gen_queue = await start_generation_queue(
            handlers.generator, nc, settings.events_stream,
            generation_queue or GenerationQueueConfig(replicas=settings.replicas))
        stack.push_async_callback(gen_queue.stop)
        # Generation limit (handlers.generation_limits): off unless configured; the
        # ops subjects answer either way (enabled: false).
        slots = None
        if settings.generation_parallelism is not None:
            slots = await open_generation_slots(
                nc, settings.events_stream, settings.generation_parallelism,
                generation_slots or SlotsConfig(replicas=settings.replicas))
            stack.push_async_callback(slots.stop)
            attach_generation_slots(handlers.generator, slots)
        register_generation_limit_commands(
            broker, GenerationLimits(store.js, settings.events_stream, slots))
        rt = Runtime(settings, urls, nc, store, broker, handlers, embedded, endpoint, app=app)
        rt.parts["rate_limits"] = limiter
        if slots is not None:
            rt.parts["generation_slots"] = slots
        rt.watchdog = ConnectionWatchdog(
            lambda: [c for c in (nc, getattr(broker, "_connection", None)) if c is not None],
            settings.nats_down_exit_s or None)
        if agents:  # a first generation must not pay litellm's lazy setup (~3 s loaded)
            await warm_up()
        for part in extra_parts or []:
            await stack.enter_async_context(part(rt))
        if before_start is not None:
            await before_start(rt)
        await broker.start()
        stack.push_async_callback(_stop_quietly, broker.stop, "the command broker")
        # Subscriptions are live once the server has processed them: flush the broker's
        # connection so a request sent right after start finds its responder.
        conn = getattr(broker, "_connection", None)
        if conn is not None:
            await conn.flush()
        # Answer ops.health (threadlog.health) while everything above runs.
        await stack.enter_async_context(serve_health(rt))
        # Long-lived start-up objects out of the collector's way (threadlog.gc_tuning).
        stack.enter_context(frozen_startup())
        yield rt


def _with_workflows(parts: list[Part] | None) -> list[Part]:
    """``parts`` plus the workflows part (worker and subjects), unless it is there."""
    from threadlog.parts import workflows_part

    parts = list(parts or [])
    return parts if workflows_part in parts else [*parts, workflows_part]


async def _stop_quietly(stop: Callable[[], Awaitable[Any]], what: str) -> None:
    """Stop a connection even while NATS is unreachable (it would otherwise raise
    "connection reconnecting" and skip the rest of the shutdown)."""
    try:
        await stop()
    except Exception as exc:
        log.warning("stopping %s: %s", what, exc)

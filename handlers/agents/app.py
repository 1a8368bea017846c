"""Agent command subscribers: ``cmd.agent.generate``, ``cmd.agent.approval``,
``cmd.agent.abort`` (served from any process: see ``handlers.agents.abort``)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from faststream.nats import NatsBroker
from nats.aio.client import Client as NATS

from events.replies import Reply
from handlers import subjects
from handlers.agents.abort import AbortSignals
from handlers.agents.approvals import decide_approval
from handlers.agents.commands import Abort, DecideApproval, Generate
from handlers.agents.definition import AgentRegistry
from handlers.agents.durable import GenerationQueue, GenerationQueueConfig
from handlers.agents.generation import Generator
from handlers.agents.llm_bridge import call_step, tool_runner
from handlers.client import Client
from handlers.command_log import answer_once
from handlers.rate_limits.gate import admit_generation
from handlers.runner import CommandRunner
from handlers.streaming import DeltaWriter
from handlers.subjects import COMMAND_QUEUE

GENERATE = subjects.GENERATE
ABORT = subjects.ABORT
GENERATE_CONCURRENCY = 1_000
"""Generations one process serves at once over request/reply (``max_workers`` of the
generate subscriber: a generation waits on its model most of the time)."""


def make_generator(runner: CommandRunner, nc: NATS | None, agents: AgentRegistry) -> Generator:
    def writer(user_id: str, thread_id: str, message_id: str, generation_id: str
               ) -> DeltaWriter:
        assert nc is not None
        return DeltaWriter(nc, user_id, thread_id, message_id, generation_id=generation_id)

    def client_for(user_id: str) -> Client | None:
        return Client(nc, user_id=user_id) if nc is not None else None

    return Generator(runner, runner.store, agents, call_step, tool_runner(client_for),
                     writer if nc is not None else None)


def register_agent_commands(broker: NatsBroker, generator: Generator) -> AbortSignals:
    """Register the agent commands; the returned :class:`AbortSignals` must be started
    (on the handlers' connection) for aborts to reach generations of other processes."""
    log = generator.runner.command_log
    signals = AbortSignals(generator)

    @broker.subscriber(GENERATE, queue=COMMAND_QUEUE, title=GENERATE,
                       max_workers=GENERATE_CONCURRENCY,
                       description="Run an agent in a thread (text, or an object for "
                                   "output_schema); stream=true publishes deltas.")
    async def generate(body: Generate) -> dict[str, Any]:
        await admit_generation(generator, body)  # rate limits: refuse before anything runs
        lookup = asyncio.ensure_future(log.lookup(body)) if log is not None else None
        try:
            res = await generator.generate(body, already_done=lookup)
        finally:
            if lookup is not None and not lookup.done():
                lookup.cancel()
        if isinstance(res, Reply):
            return res.model_dump(mode="json")
        reply = Reply.success(res.to_dict(), res.seq)
        if log is not None:
            log.record_soon(body, reply)
        return reply.model_dump(mode="json")

    @broker.subscriber(subjects.APPROVAL, queue=COMMAND_QUEUE, title=subjects.APPROVAL,
                       max_workers=GENERATE_CONCURRENCY,
                       description="Approve or deny a tool call that needs approval; the "
                                   "paused generation resumes once its step is decided.")
    async def approval(body: DecideApproval) -> dict[str, Any]:
        async def decide() -> Reply:
            result = await decide_approval(generator, body)
            return Reply.success(result, result.get("seq"))

        return (await answer_once(log, body, decide)).model_dump(mode="json")

    @broker.subscriber(ABORT, queue=COMMAND_QUEUE, title=ABORT,
                       description="Abort a running generation, whichever process runs it; "
                                   "a pending message nobody runs is finalized as failed. "
                                   "A finished message is a conflict.")
    async def abort(body: Abort) -> dict[str, Any]:
        reply = await answer_once(log, body, lambda: signals.abort(body),
                                  record_in_background=True)
        return reply.model_dump(mode="json")

    return signals


async def start_generation_queue(generator: Generator, nc: NATS, events_stream: str,
                                 config: GenerationQueueConfig | None = None
                                 ) -> GenerationQueue:
    """Make ``generator``'s generations durable (``handlers.agents.durable``) and start
    the worker taking the generations of its agents left by dead processes; stop it
    (``await queue.stop()``) before closing ``nc``."""
    async def resume(cmd: Generate, headers: Mapping[str, str]) -> Any:
        # the thread may have been written by another process since this one cached it
        # (an approval decided elsewhere): decide on the log, not on a stale cache
        await generator.runner.states.refresh(cmd.thread_id)
        return await generator.generate(cmd, from_queue=True, queue_headers=headers)

    queue = GenerationQueue(nc, events_stream, config or GenerationQueueConfig(), resume)
    generator.queue = queue
    return await queue.start(generator.agents.names())

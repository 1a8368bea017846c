"""The AsyncAPI document of every subject threadlog serves, generated from the FastStream
subscribers (so it cannot drift: ``tests/threadlog/test_asyncapi.py`` compares it with
``docs/asyncapi.json``)."""

from __future__ import annotations

from importlib import metadata

from faststream.specification import AsyncAPI
from nats.aio.client import Client as NATS

from events import EventStore
from handlers import make_broker
from handlers.agents.app import make_generator, register_agent_commands
from handlers.agents.definition import AgentRegistry
from handlers.billing import register_billing_commands
from handlers.canvas import register_canvas_commands
from handlers.rate_limits import register_rate_limit_commands
from handlers.runner import CommandRunner
from handlers.threads.app import register_thread_commands
from handlers.threads.state import ThreadStateCache
from projections import QueryService, register_query_subscribers


def asyncapi_json() -> str:
    broker = make_broker("nats://localhost:4222")
    store = EventStore(NATS())
    runner = CommandRunner(store, ThreadStateCache(store), None)
    register_thread_commands(broker, runner)
    register_agent_commands(broker, make_generator(runner, None, AgentRegistry()))
    register_billing_commands(broker, store)
    register_canvas_commands(broker, runner)
    register_rate_limit_commands(broker, None)  # type: ignore[arg-type]
    register_query_subscribers(broker, QueryService(None))  # type: ignore[arg-type]
    for register in extra_registrations():
        register(broker)
    spec = AsyncAPI(broker, title="threadlog", version=metadata.version("threadlog"),
                    description="Commands (cmd.*) and queries (query.*) over NATS "
                                "request/reply; events on JetStream (events.>).")
    return spec.to_specification().to_json()


def extra_registrations() -> list:  # type: ignore[type-arg]
    """Subscribers of other packages (queries, agents) registered for documentation."""
    return []

"""threadlog: an event-sourced, reactive backend for LLM agents on NATS JetStream + DuckDB.

The public surface::

    from threadlog import Agent, tool, ToolContext, Client, Settings, default_parts, running

    agent = Agent(name="helper", model="scripted/demo", tools=[get_weather])
    # default_parts(): the projector (queries), live relay, scheduler and workflows too
    async with running(Settings(), agents=[agent], extra_parts=default_parts()) as rt:
        client = rt.client("user-1")
        thread = (await client.create_thread(title="Hi")).value["thread_id"]
        reply = await client.generate_text("helper", thread, "What's the weather?")

Errors are :class:`ThreadlogError` (and subclasses) with a stable ``code``.
"""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from events import (
    Aggregate,
    ConcurrencyError,
    EventStore,
    EventStreamSpec,
    Forbidden,
    NotFound,
    ThreadlogError,
    ValidationFailed,
)
from handlers import Client, Result
from handlers.agents.definition import Agent, ContextOptions
from handlers.agents.generation import GenerationResult, ThreadOptions
from handlers.llm import CallSettings, Reply, Tool, ToolContext, scripted, tool
from threadlog.app import App
from threadlog.embedded_nats import EmbeddedNats
from threadlog.runtime import Runtime, running
from threadlog.serve import default_parts
from threadlog.settings import Settings, load_settings

__all__ = [
    "Agent", "Aggregate", "App", "CallSettings", "Client", "ConcurrencyError", "ContextOptions",
    "EmbeddedNats", "EventStore", "EventStreamSpec", "Forbidden", "GenerationResult",
    "NotFound", "Reply", "Result", "Runtime", "Settings", "ThreadOptions", "ThreadlogError",
    "Tool", "ToolContext", "ValidationFailed", "default_parts", "load_settings", "running",
    "scripted", "tool",
]

"""A runtime with agents is warm before it serves: litellm's lazy setup (import and
first call, ~3 s under load) is not paid by the first generations it takes."""

from __future__ import annotations

from handlers.agents.definition import Agent
from handlers.llm.scripted import scripted
from tests.conftest import RuntimeFactory

WARM_UP = "threadlog-warm-up"


async def test_a_runtime_with_agents_calls_litellm_once_before_it_serves(
        runtime_factory: RuntimeFactory) -> None:
    scripted.reset(WARM_UP)
    async with runtime_factory(agents=[Agent(name="a", model="scripted/warm-a")]):
        warmed = scripted.requests(WARM_UP)
        assert len(warmed) == 1 and warmed[0].messages[-1]["content"] == "warm up"
    assert scripted.requests("warm-a") == []  # the agent's own model was not called


async def test_a_runtime_without_agents_does_not(runtime_factory: RuntimeFactory) -> None:
    scripted.reset(WARM_UP)
    async with runtime_factory():
        assert scripted.requests(WARM_UP) == []

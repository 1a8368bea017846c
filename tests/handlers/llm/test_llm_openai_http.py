"""The model-call layer against a real OpenAI-compatible HTTP server (``openai/<name>``)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel, Field

from handlers.llm import (
    NO_BACKOFF,
    CallSettings,
    ModelPrice,
    ModelResult,
    ProviderError,
    ProviderRejected,
    ProviderTimeout,
    RateLimited,
    TextDelta,
    ToolCallDelta,
    ToolContext,
    call_model,
    execute_tool_call,
    stream_model,
    tool,
)
from handlers.llm.messages import assistant_message, tool_messages
from tests.handlers.llm.fake_openai_server import FakeOpenAIServer, FakeReply

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

FAST = CallSettings(backoff=NO_BACKOFF, max_retries=2, timeout=10)
USER = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as srv:
        yield srv


async def test_500_then_success_is_retried_and_reports_one_usage(
        server: FakeOpenAIServer) -> None:
    server.script("m500", FakeReply.error(500), FakeReply.of_text("sunny", usage=(11, 4)))
    result = await call_model("openai/m500", USER, settings=FAST,
                              provider_options=server.provider_options)
    assert result.text == "sunny"
    assert len(server.requests_for("m500")) == 2  # litellm/openai SDK retries are off
    assert result.attempts == 2
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (11, 4)
    assert result.usage.total_tokens == 15
    assert result.usage.cached_input_tokens == 2
    assert result.usage.reasoning_tokens == 1
    assert result.provider == "openai"


async def test_429_is_retried(server: FakeOpenAIServer) -> None:
    server.script("m429", FakeReply.error(429, headers={"retry-after": "0"}),
                  FakeReply.of_text("ok"))
    result = await call_model("openai/m429", USER, settings=FAST,
                              provider_options=server.provider_options)
    assert result.text == "ok" and result.attempts == 2


async def test_429_until_retries_exhausted_raises_rate_limited(
        server: FakeOpenAIServer) -> None:
    server.script("mrl", *[FakeReply.error(429)] * 3, FakeReply.of_text("too late"))
    with pytest.raises(RateLimited) as caught:
        await call_model("openai/mrl", USER, settings=FAST,
                         provider_options=server.provider_options)
    assert caught.value.code == "rate_limited"
    assert caught.value.details["attempts"] == 3
    assert caught.value.details["status_code"] == 429
    assert len(server.requests_for("mrl")) == 3


async def test_400_is_not_retried(server: FakeOpenAIServer) -> None:
    server.script("m400", FakeReply.error(400, "bad parameter"), FakeReply.of_text("never"))
    with pytest.raises(ProviderRejected) as caught:
        await call_model("openai/m400", USER, settings=FAST,
                         provider_options=server.provider_options)
    assert caught.value.code == "provider_rejected"
    assert "bad parameter" in caught.value.message
    assert len(server.requests_for("m400")) == 1


async def test_fallback_model_answers_when_primary_keeps_failing(
        server: FakeOpenAIServer) -> None:
    server.script("primary", *[FakeReply.error(503)] * 3)
    server.script("backup", FakeReply.of_text("from backup"))
    result = await call_model("openai/primary", USER, fallbacks=["openai/backup"],
                              settings=FAST, provider_options=server.provider_options)
    assert result.text == "from backup"
    assert result.model == "openai/backup"
    assert result.attempts == 4
    assert len(server.requests_for("primary")) == 3


async def test_every_model_failing_raises_with_each_failure_listed(
        server: FakeOpenAIServer) -> None:
    server.script("p2", FakeReply.error(401, "bad key"))
    server.script("b2", *[FakeReply.error(500)] * 3)
    with pytest.raises(ProviderError) as caught:
        await call_model("openai/p2", USER, fallbacks=["openai/b2"], settings=FAST,
                         provider_options=server.provider_options)
    assert caught.value.code == "provider_error"
    failures = caught.value.details["failures"]
    assert [f["model"] for f in failures] == ["openai/p2"] + ["openai/b2"] * 3
    assert failures[0]["code"] == "provider_rejected"


async def test_streaming_deltas_concatenate_to_the_final_text_with_usage(
        server: FakeOpenAIServer) -> None:
    server.script("ms", FakeReply.of_text("It is sunny in Paris today", usage=(9, 6)))
    stream = stream_model("openai/ms", USER, settings=FAST,
                          provider_options=server.provider_options)
    items = [item async for item in stream]
    deltas = [i.text for i in items if isinstance(i, TextDelta)]
    final = items[-1]
    assert isinstance(final, ModelResult) and stream.result == final
    assert len(deltas) > 1
    assert "".join(deltas) == final.text == "It is sunny in Paris today"
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (9, 6)
    assert server.requests_for("ms")[0].body["stream_options"] == {"include_usage": True}


async def test_streamed_tool_call_fragments_assemble_into_parsed_args(
        server: FakeOpenAIServer) -> None:
    server.script("mst", FakeReply.tool_call("call_1", "get_weather", {"city": "Paris"}))
    items = [i async for i in stream_model("openai/mst", USER, settings=FAST,
                                           provider_options=server.provider_options)]
    fragments = [i for i in items if isinstance(i, ToolCallDelta)]
    assert len(fragments) == 2 and fragments[0].name == "get_weather"
    final = items[-1]
    assert isinstance(final, ModelResult)
    assert final.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.args) for c in final.tool_calls] == [
        ("call_1", "get_weather", {"city": "Paris"})]


class WeatherArgs(BaseModel):
    city: str = Field(description="City name")


@tool
async def get_weather(ctx: ToolContext[Any], args: WeatherArgs) -> dict[str, Any]:
    """The current weather of a city."""
    return {"city": args.city, "sky": "sunny"}


async def test_tool_call_round_trip(server: FakeOpenAIServer) -> None:
    server.script("mt", FakeReply.tool_call("call_9", "get_weather", {"city": "Paris"}),
                  FakeReply.of_text("Sunny in Paris."))
    first = await call_model("openai/mt", USER, tools=[get_weather], settings=FAST,
                             provider_options=server.provider_options)
    sent_tools = server.requests_for("mt")[0].body["tools"]
    assert sent_tools[0]["function"]["parameters"]["properties"]["city"][
        "description"] == "City name"
    ctx: ToolContext[None] = ToolContext(agent_name="a", custom=None)
    results = [await execute_tool_call({"get_weather": get_weather}, ctx, c)
               for c in first.tool_calls]
    messages = [*USER, assistant_message(first.content_parts()), *tool_messages(results)]
    second = await call_model("openai/mt", messages, tools=[get_weather], settings=FAST,
                              provider_options=server.provider_options)
    assert second.text == "Sunny in Paris."
    sent = server.requests_for("mt")[1].body["messages"]
    assert sent[1]["tool_calls"][0]["id"] == "call_9"
    assert sent[2] == {"role": "tool", "tool_call_id": "call_9",
                       "content": '{"city": "Paris", "sky": "sunny"}'}


async def test_raw_response_handler_sees_redacted_request_and_response(
        server: FakeOpenAIServer) -> None:
    seen: list[tuple[dict[str, Any], dict[str, Any]]] = []

    async def handler(request: dict[str, Any], response: dict[str, Any]) -> None:
        seen.append((request, response))

    server.script("mr", FakeReply.of_text("hello"))
    options = {**server.provider_options,
               "extra_headers": {"Authorization": "Bearer sk-secret-header-999999"}}
    await call_model("openai/mr", USER, settings=FAST, provider_options=options,
                     raw_response_handler=handler)
    (request, response), = seen
    assert request["api_key"] == "[REDACTED]"
    assert request["extra_headers"]["Authorization"] == "[REDACTED]"
    assert FakeOpenAIServer.API_KEY not in repr(seen)
    assert request["model"] == "openai/mr" and request["messages"] == USER
    assert response["choices"][0]["message"]["content"] == "hello"
    # redaction copies: the provider still got the real credentials
    assert server.requests_for("mr")[0].headers["Authorization"].startswith("Bearer sk-")


async def test_a_server_that_never_answers_times_out(server: FakeOpenAIServer) -> None:
    server.script("mh", FakeReply(hang=True))
    settings = CallSettings(timeout=0.3, max_retries=0, backoff=NO_BACKOFF)
    with pytest.raises(ProviderTimeout) as caught:
        await call_model("openai/mh", USER, settings=settings,
                         provider_options=server.provider_options)
    assert caught.value.code == "provider_timeout"


async def test_price_override_and_litellm_price_map(server: FakeOpenAIServer) -> None:
    server.script("mp", FakeReply.of_text("x", usage=(1000, 500)))
    prices = {"openai/mp": ModelPrice(input=1e-6, output=2e-6, cached_input=0.5e-6)}
    result = await call_model("openai/mp", USER, settings=FAST, prices=prices,
                              provider_options=server.provider_options)
    # 998 fresh + 2 cached input tokens, 500 output tokens
    assert result.cost == pytest.approx(998e-6 + 2 * 0.5e-6 + 500 * 2e-6)
    unknown = await call_model("openai/mp", USER, settings=FAST,
                               provider_options=server.provider_options)
    assert unknown.cost == 0.0
    server.script("gpt-4o-mini", FakeReply.of_text("x", usage=(1000, 1000)))
    known = await call_model("openai/gpt-4o-mini", USER, settings=FAST,
                             provider_options=server.provider_options)
    assert known.cost > 0

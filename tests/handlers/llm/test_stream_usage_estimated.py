"""Usage a provider did not report is marked ``estimated`` (issue 13, part 5): a stream
without a usage chunk gets litellm's count of the text, which can be far from the bill."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from handlers.llm import NO_BACKOFF, CallSettings, ModelResult, call_model, stream_model
from handlers.llm.scripted import Reply, scripted
from tests.handlers.llm.fake_openai_server import FakeOpenAIServer, FakeReply

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

FAST = CallSettings(backoff=NO_BACKOFF, max_retries=0, timeout=10)
USER = [{"role": "user", "content": "Say hello"}]


class NoStreamUsageServer(FakeOpenAIServer):
    """An OpenAI-compatible server that ignores ``stream_options.include_usage`` (as
    some do): its streams carry no usage chunk."""

    async def _stream(self, request: web.Request, body: dict[str, Any],
                      reply: FakeReply) -> web.StreamResponse:
        return await super()._stream(request, {**body, "stream_options": None}, reply)


@pytest.fixture
async def servers() -> AsyncIterator[tuple[FakeOpenAIServer, FakeOpenAIServer]]:
    async with FakeOpenAIServer() as with_usage, NoStreamUsageServer() as without:
        yield with_usage, without


async def streamed(model: str, **options: Any) -> ModelResult:
    final = None
    async for item in stream_model(model, USER, settings=FAST, **options):
        if isinstance(item, ModelResult):
            final = item
    assert final is not None
    return final


async def test_a_stream_without_provider_usage_is_estimated(
        servers: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    with_usage, without = servers
    for srv in servers:
        srv.script("gpt-fake", FakeReply.of_text("hello there friend", usage=(5, 3)))
    reported = await streamed("openai/gpt-fake", provider_options=with_usage.provider_options)
    assert not reported.usage_estimated
    assert (reported.usage.prompt_tokens, reported.usage.completion_tokens) == (5, 3)
    guessed = await streamed("openai/gpt-fake", provider_options=without.provider_options)
    assert guessed.usage_estimated
    assert guessed.usage.total_tokens > 0 and guessed.usage.total_tokens != 8


async def test_a_call_that_is_not_streamed_is_not_estimated(
        servers: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    _, without = servers
    without.script("gpt-fake", FakeReply.of_text("hello", usage=(5, 3)))
    result = await call_model("openai/gpt-fake", USER, settings=FAST,
                              provider_options=without.provider_options)
    assert not result.usage_estimated and result.usage.total_tokens == 8


async def test_a_scripted_stream_reports_usage_and_an_aborted_one_is_estimated() -> None:
    scripted.script("est-s", [Reply.text("one two three")])
    assert not (await streamed("scripted/est-s")).usage_estimated
    scripted.script("est-a", [Reply.hanging(after_text="one two")])
    abort = asyncio.Event()
    final = None
    async for item in stream_model("scripted/est-a", USER, settings=FAST, abort=abort):
        if isinstance(item, ModelResult):
            final = item
        else:
            abort.set()
    assert final is not None and final.aborted and final.usage_estimated

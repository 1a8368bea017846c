"""litellm's success logging is skipped only when no litellm callback is configured; usage
and cost threadlog records are the same either way (see ``handlers.llm.litellm_tuning``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from handlers.llm import NO_BACKOFF, CallSettings, ModelResult, call_model
from handlers.llm.litellm_loader import load_litellm
from handlers.llm.litellm_tuning import CALLBACK_SETTINGS, callbacks_configured, lean_call
from tests.handlers.llm.fake_openai_server import FakeOpenAIServer, FakeReply

NO_RETRY = CallSettings(backoff=NO_BACKOFF, max_retries=0, timeout=10)


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    """An OpenAI-compatible server answering ``gpt-4o-mini`` (priced by litellm)."""
    async with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def litellm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """litellm with fresh, empty callback lists (restored afterwards: litellm moves
    ``callbacks`` into its other lists in place)."""
    lib = load_litellm()
    for name in CALLBACK_SETTINGS:
        monkeypatch.setattr(lib, name, type(getattr(lib, name))())
    assert not callbacks_configured(lib)
    yield lib


async def priced_call(server: FakeOpenAIServer) -> ModelResult:
    server.script("gpt-4o-mini", FakeReply.of_text("sunny", usage=(1000, 1000)))
    return await call_model("openai/gpt-4o-mini", [{"role": "user", "content": "Weather?"}],
                            settings=NO_RETRY, provider_options=server.provider_options)


async def test_without_callbacks_litellm_metadata_is_skipped_only_inside_lean_call(
        litellm: Any) -> None:
    messages = [{"role": "user", "content": "hi"}]
    plain = await litellm.acompletion(model="scripted/tuning", messages=messages)
    assert "response_cost" in plain._hidden_params  # litellm's full behaviour
    with lean_call({}):
        lean = await litellm.acompletion(model="scripted/tuning", messages=messages)
    assert "response_cost" not in lean._hidden_params
    assert lean.choices[0].message.content and lean.usage.total_tokens > 0
    with lean_call({"success_callback": []}):  # a per-call callback: full behaviour
        dynamic = await litellm.acompletion(model="scripted/tuning", messages=messages)
    assert "response_cost" in dynamic._hidden_params


async def test_a_configured_custom_logger_still_gets_every_success(
        litellm: Any, server: FakeOpenAIServer) -> None:
    from litellm.integrations.custom_logger import CustomLogger

    done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    class Spy(CustomLogger):  # type: ignore[misc]
        async def async_log_success_event(self, kwargs: Any, response_obj: Any,
                                          start_time: Any, end_time: Any) -> None:
            if not done.done():
                done.set_result(kwargs)

    without = await priced_call(server)
    litellm.callbacks = [Spy()]
    assert callbacks_configured(litellm)
    with_logger = await priced_call(server)
    logged = await asyncio.wait_for(done, 10)
    assert logged["response_cost"] == pytest.approx(with_logger.cost)
    assert with_logger.cost > 0
    assert (with_logger.usage, with_logger.cost) == (without.usage, without.cost)
    cost = sum(litellm.cost_per_token(model="openai/gpt-4o-mini", prompt_tokens=1000,
                                      completion_tokens=1000, cache_read_input_tokens=2))
    assert without.cost == pytest.approx(cost)


async def test_a_configured_success_callback_function_still_runs(
        litellm: Any, server: FakeOpenAIServer) -> None:
    done: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def on_success(kwargs: Any, response: Any, start_time: Any, end_time: Any) -> None:
        if not done.done():
            done.set_result(kwargs.get("response_cost") or 0.0)

    litellm.success_callback = [on_success]
    result = await priced_call(server)
    assert await asyncio.wait_for(done, 10) == pytest.approx(result.cost)


def test_a_litellm_without_the_private_names_is_left_alone(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from types import SimpleNamespace

    from handlers.llm import litellm_tuning

    def update_response_metadata(**kwargs: Any) -> None: ...

    older = SimpleNamespace(utils=SimpleNamespace(update_response_metadata=update_response_metadata))
    monkeypatch.setattr(litellm_tuning, "_installed", None)
    assert litellm_tuning.install(older) is False
    assert litellm_tuning.install(older) is False  # decided once, logged once
    assert older.utils.update_response_metadata is update_response_metadata
    assert [r.levelname for r in caplog.records if "litellm" in r.getMessage()] == ["WARNING"]

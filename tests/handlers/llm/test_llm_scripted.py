"""The scripted model, through litellm: scripts, default behaviour, streaming, aborts."""

from __future__ import annotations

import asyncio
import math
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from handlers.llm import (
    NO_BACKOFF,
    CallSettings,
    ContextMessage,
    ModelResult,
    ProviderTimeout,
    Reply,
    TextDelta,
    ToolContext,
    call_model,
    embed_texts,
    execute_tool_call,
    scripted,
    stream_model,
    to_chat_messages,
    tool,
)
from handlers.llm.scripted import count_tokens, example_for_schema

FAST = CallSettings(backoff=NO_BACKOFF, timeout=10)


def ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


class CityArgs(BaseModel):
    city: str = Field(description="City name")


@tool
async def get_weather(ctx: ToolContext[Any], args: CityArgs) -> str:
    """Weather of a city."""
    return f"sunny in {args.city}"


async def test_default_reply_echoes_the_prompt_with_word_counted_usage() -> None:
    result = await call_model("scripted/echo-test", ask("Hello, world!"))
    assert result.text == "You said: Hello, world!"
    assert result.provider == "scripted" and result.cost == 0.0
    assert result.usage.prompt_tokens == count_tokens("Hello, world!") == 4
    assert result.usage.completion_tokens == count_tokens(result.text)


async def test_queued_replies_come_in_order_and_requests_are_recorded() -> None:
    scripted.script("order", [Reply.text("first"), Reply.text("second")])
    settings = CallSettings(temperature=0.3, seed=7, max_tokens=50)
    one = await call_model("scripted/order", ask("a"), settings=settings)
    two = await call_model("scripted/order", ask("b"))
    three = await call_model("scripted/order", ask("c"))
    assert (one.text, two.text, three.text) == ("first", "second", "You said: c")
    requests = scripted.requests("order")
    assert [r.messages[-1]["content"] for r in requests] == ["a", "b", "c"]
    assert requests[0].params["temperature"] == 0.3 and requests[0].params["seed"] == 7
    assert requests[0].params["max_tokens"] == 50
    scripted.reset("order")
    assert scripted.requests("order") == []


async def test_default_calls_a_tool_named_in_the_prompt_once_then_answers() -> None:
    chat = ask("Use get_weather please")
    first = await call_model("scripted/tools-default", chat, tools=[get_weather])
    assert [c.name for c in first.tool_calls] == ["get_weather"]
    assert first.finish_reason == "tool_calls"
    assert first.tool_calls[0].args == {"city": "example city"}
    ctx: ToolContext[None] = ToolContext(agent_name="demo", custom=None)
    result = await execute_tool_call({"get_weather": get_weather}, ctx, first.tool_calls[0])
    chat = [*chat, *to_chat_messages([ContextMessage("assistant", first.content_parts()),
                                      ContextMessage("tool", [result])])]
    second = await call_model("scripted/tools-default", chat, tools=[get_weather])
    assert second.tool_calls == ()
    assert second.text == "get_weather returned: sunny in example city"


async def test_scripted_tool_call_ids_are_deterministic() -> None:
    scripted.script("ids", [Reply.tool_call("get_weather", {"city": "Paris"})] * 2)
    a = await call_model("scripted/ids", ask("x"), tools=[get_weather])
    b = await call_model("scripted/ids", ask("x"), tools=[get_weather])
    assert a.tool_calls[0].id == b.tool_calls[0].id
    assert a.tool_calls[0].args == {"city": "Paris"}


class Address(BaseModel):
    street: str
    zip_code: str = Field(min_length=5, max_length=5)


class Person(BaseModel):
    name: str
    age: int = Field(ge=18, le=130)
    score: float = Field(gt=0.5)
    role: Literal["admin", "user"]
    tags: list[str] = Field(min_length=2)
    address: Address
    nickname: str | None = None


def test_schema_examples_validate_against_their_pydantic_model() -> None:
    value = example_for_schema(Person.model_json_schema())
    person = Person.model_validate(value)
    assert person.age == 18 and person.role == "admin" and len(person.tags) == 2
    assert example_for_schema(Person.model_json_schema()) == value


async def test_default_structured_output_is_valid_json_for_the_schema() -> None:
    from handlers.llm import response_format_for

    result = await call_model("scripted/structured", ask("a person"),
                              response_format=response_format_for(Person))
    Person.model_validate_json(result.text)


async def test_stream_and_call_report_the_same_text_and_usage() -> None:
    scripted.script("same", [Reply.text("one two three"), Reply.text("one two three")])
    called = await call_model("scripted/same", ask("count"))
    stream = stream_model("scripted/same", ask("count"))
    deltas = [i.text async for i in stream if isinstance(i, TextDelta)]
    assert deltas == ["one ", "two ", "three"]
    assert stream.result is not None
    assert stream.result.text == called.text
    assert stream.result.usage == called.usage


async def test_error_replies_are_retried_through_litellm() -> None:
    scripted.script("flaky", [Reply.error(429), Reply.error(503), Reply.text("finally")])
    result = await call_model("scripted/flaky", ask("x"), settings=FAST)
    assert result.text == "finally" and result.attempts == 3


async def test_a_hanging_model_times_out() -> None:
    scripted.script("hang", [Reply.hanging()])
    with pytest.raises(ProviderTimeout):
        await call_model("scripted/hang", ask("x"),
                         settings=CallSettings(timeout=0.05, max_retries=0))


async def test_abort_stops_a_stream_and_counts_what_was_streamed() -> None:
    scripted.script("abort", [Reply.hanging(after_text="partial answer here")])
    abort = asyncio.Event()
    stream = stream_model("scripted/abort", ask("tell me"), abort=abort)
    seen: list[str] = []
    async for item in stream:
        if isinstance(item, TextDelta):
            seen.append(item.text)
            if len(seen) == 3:  # the model now hangs: only the abort can end the stream
                abort.set()
        else:
            final = item
    assert isinstance(final, ModelResult) and final.aborted
    assert final.text == "".join(seen) == "partial answer here"
    assert final.usage.completion_tokens == 3
    assert final.usage.prompt_tokens == 2


async def test_abort_before_the_first_chunk_ends_with_an_empty_aborted_result() -> None:
    scripted.script("abort-early", [Reply.hanging()])
    abort = asyncio.Event()
    asyncio.get_running_loop().call_soon(abort.set)
    items = [i async for i in stream_model("scripted/abort-early", ask("x"), abort=abort)]
    assert len(items) == 1 and isinstance(items[0], ModelResult)
    assert items[0].aborted and items[0].text == ""


async def test_cancelling_the_consumer_keeps_the_partial_result() -> None:
    scripted.script("cancel", [Reply.hanging(after_text="some words")])
    stream = stream_model("scripted/cancel", ask("x"))
    got_two = asyncio.Event()

    async def consume() -> None:
        count = 0
        async for _ in stream:
            count += 1
            if count == 2:
                got_two.set()

    task = asyncio.create_task(consume())
    await got_two.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stream.result is not None and stream.result.aborted
    assert stream.result.text == "some words"


async def test_scripted_embeddings_are_deterministic_unit_vectors() -> None:
    result = await embed_texts("scripted/hash-32", ["the cat sat", "the cat sat",
                                                    "a cat sat down", "stock markets fell"])
    a, same, near, far = result.vectors
    assert len(a) == 32 and a == same
    assert math.isclose(sum(v * v for v in a), 1.0)

    def cos(x: list[float], y: list[float]) -> float:
        return sum(p * q for p, q in zip(x, y, strict=True))

    assert cos(a, near) > cos(a, far)
    assert result.usage.prompt_tokens == 3 + 3 + 4 + 3

"""The ``scripted/`` litellm custom provider (imported only by ``litellm_loader``).

Every ``litellm.acompletion(model="scripted/<name>", ...)`` lands here: the reply is the next
one queued for ``<name>`` in ``script_book.scripted``, else the default behaviour. Streams
yield the text word by word, then each tool call in one chunk, then a final chunk with the
finish reason and usage (litellm emits the usage chunk when
``stream_options={"include_usage": True}``). Usage is counted by ``tokens.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm
from litellm.llms.custom_llm import CustomLLM, CustomLLMError

from handlers.llm.scripted.default_behaviour import default_reply
from handlers.llm.scripted.hash_embedding import dimensions_of_model, hash_embedding
from handlers.llm.scripted.replies import Reply
from handlers.llm.scripted.script_book import ScriptedRequest, scripted
from handlers.llm.scripted.tokens import count_message_tokens, count_reply_tokens, count_tokens

PROVIDER = "scripted"
_PIECE = re.compile(r"\s*\S+\s*|\s+")


def register_scripted_provider(module: Any) -> None:
    """Add the ``scripted`` provider to ``litellm.custom_provider_map`` (idempotent)."""
    current = list(module.custom_provider_map)
    if not any(item.get("provider") == PROVIDER for item in current):
        module.custom_provider_map = [*current, {"provider": PROVIDER,
                                                 "custom_handler": ScriptedLLM()}]


class ScriptedLLM(CustomLLM):
    """litellm handler of the scripted model (sync and async, streaming or not)."""

    def completion(self, model: str, messages: list[Any], optional_params: dict[str, Any],  # type: ignore[override]
                   **_: Any) -> Any:
        request, reply = _take(model, messages, optional_params, stream=False)
        if scripted.chunk_delay:
            time.sleep(scripted.chunk_delay)
        if reply.error_status is not None:
            raise _error(reply)
        return _model_response(request, reply)

    async def acompletion(self, model: str, messages: list[Any],  # type: ignore[override]
                          optional_params: dict[str, Any], **_: Any) -> Any:
        request, reply = _take(model, messages, optional_params, stream=False)
        if scripted.latency_of(model):
            await asyncio.sleep(scripted.latency_of(model))
        if reply.hang:
            await asyncio.Event().wait()
        if scripted.chunk_delay:
            await asyncio.sleep(scripted.chunk_delay)
        if reply.error_status is not None:
            raise _error(reply)
        return _model_response(request, reply)

    def streaming(self, model: str, messages: list[Any], optional_params: dict[str, Any],  # type: ignore[override]
                  **_: Any) -> Iterator[dict[str, Any]]:
        request, reply = _take(model, messages, optional_params, stream=True)
        if reply.error_status is not None and not reply.content:
            raise _error(reply)
        for chunk in _chunks(request, reply):
            if scripted.chunk_delay:
                time.sleep(scripted.chunk_delay)
            yield chunk

    async def astreaming(self, model: str, messages: list[Any],  # type: ignore[override]
                         optional_params: dict[str, Any],
                         **_: Any) -> AsyncIterator[dict[str, Any]]:
        request, reply = _take(model, messages, optional_params, stream=True)
        if scripted.latency_of(model):
            await asyncio.sleep(scripted.latency_of(model))
        if reply.hang and not reply.content:
            await asyncio.Event().wait()
        if reply.error_status is not None and not reply.content:
            raise _error(reply)
        for chunk in _chunks(request, reply):
            if scripted.chunk_delay:
                await asyncio.sleep(scripted.chunk_delay)
            if reply.hang and chunk["is_finished"]:  # streams the content, then hangs
                await asyncio.Event().wait()
            yield chunk
        if reply.error_status is not None:  # fails mid-stream, after the content
            raise _error(reply)

    def embedding(self, model: str, input: list[Any], model_response: Any,  # type: ignore[override]
                  **_: Any) -> Any:
        return _embedding_response(model, input, model_response)

    async def aembedding(self, model: str, input: list[Any], model_response: Any,  # type: ignore[override]
                         **_: Any) -> Any:
        return _embedding_response(model, input, model_response)


def _take(model: str, messages: list[Any], optional_params: dict[str, Any],
          *, stream: bool) -> tuple[ScriptedRequest, Reply]:
    params = dict(optional_params)
    tools = params.pop("tools", None)
    response_format = params.pop("response_format", None)
    params.pop("stream", None)
    request = ScriptedRequest(model=model, messages=list(messages), tools=tools,
                              response_format=response_format, params=params, stream=stream)
    reply = scripted.take(request)
    return request, reply if reply is not None else default_reply(request)


def _error(reply: Reply) -> CustomLLMError:
    return CustomLLMError(  # type: ignore[no-untyped-call]
        status_code=reply.error_status, message=reply.error_message)


def _tool_call_id(request: ScriptedRequest, index: int, name: str) -> str:
    seed = f"{request.model}|{len(request.messages)}|{index}|{name}"
    return "call_" + hashlib.sha1(seed.encode()).hexdigest()[:16]


def _tool_calls(request: ScriptedRequest, reply: Reply) -> list[dict[str, Any]]:
    return [
        {"id": call.id or _tool_call_id(request, i, call.name), "type": "function",
         "function": {"name": call.name, "arguments": call.arguments_json()}}
        for i, call in enumerate(reply.tool_calls)
    ]


def _usage(request: ScriptedRequest, reply: Reply) -> tuple[int, int]:
    if reply.usage is not None:
        return reply.usage
    prompt = count_message_tokens(request.messages)
    completion = count_reply_tokens(reply.content, ((c.name, c.arguments_json())
                                                    for c in reply.tool_calls))
    return prompt, completion


def _model_response(request: ScriptedRequest, reply: Reply) -> Any:
    tool_calls = _tool_calls(request, reply)
    message = litellm.Message(content=reply.content, role="assistant",
                              tool_calls=tool_calls or None)
    choice = litellm.Choices(finish_reason=reply.resolved_finish_reason(), index=0,
                             message=message)
    prompt, completion = _usage(request, reply)
    usage = litellm.Usage(prompt_tokens=prompt, completion_tokens=completion,
                          total_tokens=prompt + completion)
    return litellm.ModelResponse(model=request.model, choices=[choice], usage=usage)


def _chunks(request: ScriptedRequest, reply: Reply) -> Iterator[dict[str, Any]]:
    for piece in _PIECE.findall(reply.content):
        yield {"text": piece, "is_finished": False, "finish_reason": "", "usage": None,
               "index": 0, "tool_use": None}
    for i, call in enumerate(_tool_calls(request, reply)):
        yield {"text": "", "is_finished": False, "finish_reason": "", "usage": None,
               "index": 0, "tool_use": {**call, "index": i}}
    if reply.error_status is not None:
        return
    prompt, completion = _usage(request, reply)
    yield {"text": "", "is_finished": True, "finish_reason": reply.resolved_finish_reason(),
           "index": 0, "tool_use": None,
           "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                     "total_tokens": prompt + completion}}


def _embedding_response(model: str, texts: list[Any], model_response: Any) -> Any:
    dimensions = dimensions_of_model(model)
    strings = [t if isinstance(t, str) else str(t) for t in texts]
    model_response.data = [
        {"object": "embedding", "index": i, "embedding": hash_embedding(text, dimensions)}
        for i, text in enumerate(strings)
    ]
    model_response.model = model
    tokens = sum(count_tokens(text) for text in strings)
    model_response.usage = litellm.Usage(prompt_tokens=tokens, completion_tokens=0,
                                         total_tokens=tokens)
    return model_response

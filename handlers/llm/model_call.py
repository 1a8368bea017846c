"""One model step: ``call_model`` (and ``stream_model``, re-exported from ``model_stream``).

Guarantees: the step has one ``call_id`` whatever the retries and fallbacks, so usage
recorded under it is recorded once; the result's ``usage`` and ``cost`` are those of the
successful attempt (failed attempts report none). Failures after the attempt plan is
exhausted raise a ``ProviderError`` subclass (``rate_limited``, ``provider_timeout``,
``provider_rejected``, ``prompt_too_large``, ``provider_error``). Cancellation propagates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from events.ids import new_id
from handlers.llm.attempts import AttemptPlan
from handlers.llm.call_settings import DEFAULT_SETTINGS, CallSettings
from handlers.llm.litellm_loader import load_litellm
from handlers.llm.litellm_tuning import lean_call
from handlers.llm.model_request import (
    RawResponseHandler,
    ToolsArg,
    build_request,
    dump_response,
    provider_of,
    report_raw_response,
)
from handlers.llm.model_stream import ModelStream, stream_model
from handlers.llm.results import ModelResult, parse_tool_call
from handlers.llm.usage_and_cost import ModelPrice, cost_of, usage_from_litellm


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def result_from_response(response: Any, *, call_id: str, model: str, provider: str | None,
                         attempts: int, prices: Mapping[str, ModelPrice] | None) -> ModelResult:
    """A ``ModelResult`` from a litellm ``ModelResponse`` (first choice)."""
    choice = response.choices[0]
    message = choice.message
    calls = tuple(
        parse_tool_call(str(_field(c, "id") or f"call_{i}"),
                        str(_field(_field(c, "function"), "name") or ""),
                        _field(_field(c, "function"), "arguments"))
        for i, c in enumerate(_field(message, "tool_calls") or ())
    )
    usage = usage_from_litellm(getattr(response, "usage", None))
    finish = choice.finish_reason or ("tool_calls" if calls else "stop")
    metadata: dict[str, Any] = {"response_model": getattr(response, "model", None)}
    fingerprint = getattr(response, "system_fingerprint", None)
    if fingerprint:
        metadata["system_fingerprint"] = fingerprint
    return ModelResult(call_id=call_id, model=model, provider=provider,
                       text=_field(message, "content") or "", tool_calls=calls,
                       finish_reason=str(finish), usage=usage,
                       cost=cost_of(model, usage, prices=prices), attempts=attempts,
                       response_id=getattr(response, "id", None), provider_metadata=metadata)


async def call_model(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    tools: ToolsArg = None,
    tool_choice: Any = None,
    response_format: Any = None,
    settings: CallSettings = DEFAULT_SETTINGS,
    fallbacks: Sequence[str] = (),
    provider_options: Mapping[str, Any] | None = None,
    prices: Mapping[str, ModelPrice] | None = None,
    raw_response_handler: RawResponseHandler | None = None,
    call_id: str | None = None,
) -> ModelResult:
    """Call ``model`` (then ``fallbacks``) through ``litellm.acompletion``, with retries.

    ``messages`` are OpenAI chat messages (see ``messages.to_chat_messages``); ``tools`` are
    ``Tool`` objects or OpenAI tool dicts. Raises a ``ProviderError`` subclass once every
    attempt failed (see ``attempts.py`` for the schedule)."""
    litellm = load_litellm()
    call_id = call_id or new_id()
    models = [model, *fallbacks]
    plan = AttemptPlan(models, settings, call_id, [provider_of(m) for m in models])
    for attempt in plan:
        await plan.wait_before(attempt)
        request = build_request(attempt.model, attempt.provider, messages, settings=settings,
                                tools=tools, tool_choice=tool_choice,
                                response_format=response_format,
                                provider_options=provider_options)
        try:
            async with asyncio.timeout(settings.timeout):
                with lean_call(request, wants_metadata=raw_response_handler is not None):
                    response = await litellm.acompletion(**request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            plan.failed(exc, attempt)
            continue
        await report_raw_response(raw_response_handler, request,
                                  dump_response(response) if raw_response_handler else {})
        return result_from_response(response, call_id=call_id, model=attempt.model,
                                    provider=attempt.provider, attempts=attempt.number,
                                    prices=prices)
    raise plan.error()


__all__ = ["DEFAULT_SETTINGS", "ModelStream", "call_model", "parse_tool_call",
           "result_from_response", "stream_model"]

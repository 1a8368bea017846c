"""One model step, streamed: ``stream_model`` returns a ``ModelStream``.

Iterating a ``ModelStream`` yields ``TextDelta`` and ``ToolCallDelta`` items as the provider
sends them, then, last, the ``ModelResult`` (also kept in ``stream.result``). litellm is
asked for ``stream_options={"include_usage": True}``; when a provider sends no usage,
litellm's closing usage chunk holds its own ``token_counter`` estimate (and a stream cut
short has none: it is estimated here). Either way the result says so:
``ModelResult.usage_estimated`` is true unless a chunk from the provider carried usage
(read from litellm's stream wrapper, which keeps the provider's chunks; a wrapper without
them counts as reported when it gave usage).

Guarantees and failure modes:

* Retries and fallbacks (``attempts.py``) happen only before the first delta was yielded;
  a failure after that raises at once (the caller has shown partial output).
* ``timeout`` bounds the wait for the stream to open and for each next chunk.
* ``abort`` (an ``asyncio.Event``): when set, the stream stops promptly, even while waiting
  for a slow provider; the last item is a ``ModelResult`` with ``finish_reason="aborted"``,
  the text streamed so far, and usage counting what was streamed. No exception.
* Cancellation of the consuming task propagates; ``stream.result`` then still holds the
  partial result (``finish_reason="aborted"``), for recording partial usage.
* A provider error after deltas: the ``ProviderError`` is raised and ``stream.result``
  holds the partial result (``finish_reason="error"``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from events.content import Usage
from events.ids import new_id
from handlers.llm.attempts import Attempt, AttemptPlan
from handlers.llm.call_settings import DEFAULT_SETTINGS, CallSettings
from handlers.llm.litellm_loader import load_litellm
from handlers.llm.model_request import (
    RawResponseHandler,
    ToolsArg,
    build_request,
    dump_response,
    provider_of,
    report_raw_response,
)
from handlers.llm.provider_errors import classify_failure
from handlers.llm.results import (
    ModelResult,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    parse_tool_call,
)
from handlers.llm.scripted.tokens import count_message_tokens, count_tokens
from handlers.llm.usage_and_cost import ModelPrice, cost_of, usage_from_litellm


class _Aborted(Exception):
    pass


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    args: str = ""


@dataclass
class _StreamState:
    """What one attempt has streamed so far."""

    text: list[str] = field(default_factory=list)
    calls: dict[int, _PartialCall] = field(default_factory=dict)
    usage: Any = None
    finish_reason: str | None = None
    response_id: str | None = None
    response_model: str | None = None
    emitted: bool = False
    chunks: list[Any] = field(default_factory=list)
    source: Any = None
    """litellm's stream wrapper (its ``chunks`` tell whether the provider sent usage)."""


class ModelStream:
    """An async iterable of ``StreamEvent`` (see the module docstring). Iterate it once."""

    def __init__(self, models: Sequence[str], messages: Sequence[Mapping[str, Any]], *,
                 tools: ToolsArg, tool_choice: Any, response_format: Any,
                 settings: CallSettings, provider_options: Mapping[str, Any] | None,
                 prices: Mapping[str, ModelPrice] | None,
                 raw_response_handler: RawResponseHandler | None,
                 call_id: str, abort: asyncio.Event | None) -> None:
        self.call_id = call_id
        self.result: ModelResult | None = None
        """The final (or partial, after an abort, cancellation or mid-stream error) result."""
        self._models = list(models)
        self._messages = [dict(m) for m in messages]
        self._tools = tools
        self._tool_choice = tool_choice
        self._response_format = response_format
        self._settings = settings
        self._provider_options = provider_options
        self._prices = prices
        self._raw_handler = raw_response_handler
        self._abort = abort
        self._started = False

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        if self._started:
            raise RuntimeError("a ModelStream can be iterated only once")
        self._started = True
        return self._run()

    async def _run(self) -> AsyncIterator[StreamEvent]:
        plan = AttemptPlan(self._models, self._settings, self.call_id,
                           [provider_of(m) for m in self._models])
        for attempt in plan:
            await plan.wait_before(attempt)
            state = _StreamState()
            try:
                async for delta in self._attempt(attempt, state):
                    yield delta
            except _Aborted:
                self.result = self._result(attempt, state, finish_reason="aborted")
                yield self.result
                return
            except (asyncio.CancelledError, GeneratorExit):
                # cancelled, or the consumer stopped iterating: keep what was streamed
                self.result = self._result(attempt, state, finish_reason="aborted")
                raise
            except Exception as exc:
                if state.emitted:
                    self.result = self._result(attempt, state, finish_reason="error")
                    raise classify_failure(exc, model=attempt.model,
                                           provider=attempt.provider, call_id=self.call_id,
                                           attempts=attempt.number).error from exc
                plan.failed(exc, attempt)
                continue
            self.result = self._result(attempt, state, finish_reason=None)
            yield self.result
            return
        raise plan.error()

    async def _attempt(self, attempt: Attempt, state: _StreamState,
                       ) -> AsyncIterator[TextDelta | ToolCallDelta]:
        litellm = load_litellm()
        request = build_request(attempt.model, attempt.provider, self._messages,
                                settings=self._settings, tools=self._tools,
                                tool_choice=self._tool_choice,
                                response_format=self._response_format,
                                provider_options=self._provider_options)
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
        stream = await self._bounded(litellm.acompletion(**request))
        state.source = stream
        iterator = stream.__aiter__()
        try:
            while True:
                try:
                    chunk = await self._bounded(iterator.__anext__())
                except StopAsyncIteration:
                    break
                for delta in self._absorb(chunk, state):
                    state.emitted = True
                    yield delta
        finally:
            close = getattr(iterator, "aclose", None) or getattr(stream, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
        if self._raw_handler is not None:
            await report_raw_response(self._raw_handler, request,
                                      _built_response(litellm, state, self._messages))

    async def _bounded(self, awaitable: Any) -> Any:
        """Await within the timeout; raise ``_Aborted`` as soon as ``abort`` is set."""
        if self._abort is None:
            async with asyncio.timeout(self._settings.timeout):
                return await awaitable
        if self._abort.is_set():
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            raise _Aborted
        task = asyncio.ensure_future(awaitable)
        waiter = asyncio.ensure_future(self._abort.wait())
        try:
            done, _ = await asyncio.wait({task, waiter}, timeout=self._settings.timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if task in done:
            return task.result()
        if waiter in done:
            raise _Aborted
        raise TimeoutError

    def _absorb(self, chunk: Any, state: _StreamState) -> list[TextDelta | ToolCallDelta]:
        if self._raw_handler is not None:
            state.chunks.append(chunk)
        state.response_id = state.response_id or getattr(chunk, "id", None)
        state.response_model = state.response_model or getattr(chunk, "model", None)
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            state.usage = usage
        deltas: list[TextDelta | ToolCallDelta] = []
        for choice in getattr(chunk, "choices", None) or ():
            if choice.finish_reason:
                state.finish_reason = choice.finish_reason
            delta = choice.delta
            if delta is None:
                continue
            if delta.content:
                state.text.append(delta.content)
                deltas.append(TextDelta(delta.content))
            for call in getattr(delta, "tool_calls", None) or ():
                index = call.index if isinstance(call.index, int) else len(state.calls)
                partial = state.calls.setdefault(index, _PartialCall())
                function = call.function
                name = getattr(function, "name", None) if function is not None else None
                args = (getattr(function, "arguments", None) or "") if function else ""
                partial.id = partial.id or (call.id or "")
                partial.name = partial.name or (name or "")
                partial.args += args
                deltas.append(ToolCallDelta(index, call.id, name, args))
        return deltas

    def _result(self, attempt: Attempt, state: _StreamState, *,
                finish_reason: str | None) -> ModelResult:
        text = "".join(state.text)
        calls = tuple(parse_tool_call(p.id or f"call_{i}", p.name, p.args)
                      for i, p in sorted(state.calls.items()))
        usage = usage_from_litellm(state.usage) if state.usage is not None else None
        estimated = usage is None or not _provider_reported_usage(state.source)
        if usage is None or usage.total_tokens == 0:
            usage, estimated = self._estimate_usage(attempt.model, text, calls), True
        reason = finish_reason or state.finish_reason or ("tool_calls" if calls else "stop")
        return ModelResult(call_id=self.call_id, model=attempt.model,
                           provider=attempt.provider, text=text, tool_calls=calls,
                           finish_reason=reason, usage=usage,
                           cost=cost_of(attempt.model, usage, prices=self._prices),
                           attempts=attempt.number, response_id=state.response_id,
                           provider_metadata={"response_model": state.response_model,
                                              "streamed": True},
                           usage_estimated=estimated)

    def _estimate_usage(self, model: str, text: str, calls: tuple[Any, ...]) -> Usage:
        """Usage for a stream that reported none (aborted, or a provider without it)."""
        completion_text = text + "".join(c.name + c.raw_args for c in calls)
        if model.startswith("scripted/"):
            prompt = count_message_tokens(self._messages)
            completion = count_tokens(completion_text)
        else:
            litellm = load_litellm()
            try:
                prompt = int(litellm.token_counter(model=model, messages=self._messages))
                completion = int(litellm.token_counter(model=model, text=completion_text)
                                 ) if completion_text else 0
            except Exception:
                prompt = count_message_tokens(self._messages)
                completion = count_tokens(completion_text)
        return Usage(prompt_tokens=prompt, completion_tokens=completion,
                     total_tokens=prompt + completion)


def _provider_reported_usage(source: Any) -> bool:
    """Whether a chunk litellm received from the provider carried usage. litellm keeps
    them in its stream wrapper's ``chunks``; its own closing usage chunk is not among
    them. A wrapper without ``chunks`` (another litellm) counts as reported."""
    chunks = getattr(source, "chunks", None)
    if not isinstance(chunks, list):
        return True
    return any(getattr(c, "usage", None) is not None for c in chunks)


def _built_response(litellm: Any, state: _StreamState,
                    messages: list[dict[str, Any]]) -> dict[str, Any]:
    try:
        return dump_response(litellm.stream_chunk_builder(state.chunks, messages=messages))
    except Exception:
        return {"text": "".join(state.text), "streamed": True}


def stream_model(
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
    abort: asyncio.Event | None = None,
) -> ModelStream:
    """A streamed model step; same arguments as ``call_model`` plus ``abort``.

    Nothing happens until the stream is iterated."""
    return ModelStream([model, *fallbacks], messages, tools=tools, tool_choice=tool_choice,
                       response_format=response_format, settings=settings,
                       provider_options=provider_options, prices=prices,
                       raw_response_handler=raw_response_handler,
                       call_id=call_id or new_id(), abort=abort)

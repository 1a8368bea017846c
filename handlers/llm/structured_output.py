"""Structured output: a pydantic model from model output, with one repair attempt.

``generate_object`` asks the model for JSON matching ``schema`` (``response_format`` with the
model's JSON schema). If the answer does not parse or validate, it makes one more call that
shows the model its output and the validation errors and asks for a corrected object; if
that fails too, ``InvalidModelOutput`` (code ``invalid_model_output``) is raised, carrying
the ``ModelResult`` of both calls (``.results``) so their usage can still be recorded.

``partial_object`` parses the prefix of a streamed JSON object (for ``stream_object``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from pydantic import BaseModel

from handlers.llm.errors import InvalidModelOutput
from handlers.llm.output_schema import ObjectParseError, OutputSchema
from handlers.llm.results import ModelResult

T = TypeVar("T", bound=BaseModel)

__all__ = ["ModelCaller", "ObjectParseError", "ObjectResult", "generate_object",
           "parse_object", "partial_object", "repair_messages", "response_format_for"]


def response_format_for(schema: type[BaseModel]) -> dict[str, Any]:
    """The OpenAI ``response_format`` asking for a JSON object valid for ``schema``."""
    return {"type": "json_schema",
            "json_schema": {"name": schema.__name__, "schema": schema.model_json_schema(),
                            "strict": False}}


def parse_object(schema: type[T], text: str) -> T:
    """Parse ``text`` (JSON, or JSON in a Markdown code fence) into ``schema``, checked
    against the model's JSON schema and then by pydantic (``handlers.llm.output_schema``).

    Raises ``ObjectParseError`` with the JSON or validation errors."""
    parsed = OutputSchema(schema.model_json_schema(), schema.model_validate).parse(text)
    return cast(T, parsed.value)


def repair_messages(messages: Sequence[Mapping[str, Any]], output: str,
                    error: ObjectParseError) -> list[dict[str, Any]]:
    """The repair call's messages: the original ones, the bad output, and the errors."""
    listed = "\n".join(f"- {'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}"
                       for e in error.errors)
    return [*(dict(m) for m in messages),
            {"role": "assistant", "content": output},
            {"role": "user", "content": "Your previous answer was not valid for the required "
             f"JSON schema:\n{listed}\nReply with only the corrected JSON object."}]


ModelCaller = Callable[..., Awaitable[ModelResult]]


@dataclass(frozen=True)
class ObjectResult(Generic[T]):
    """The validated object and every model call made for it (1, or 2 after a repair)."""

    object: T
    results: tuple[ModelResult, ...]

    @property
    def repaired(self) -> bool:
        return len(self.results) > 1


async def generate_object(model: str, messages: Sequence[Mapping[str, Any]],
                          schema: type[T], *, call: ModelCaller | None = None,
                          **call_kwargs: Any) -> ObjectResult[T]:
    """Call the model for a ``schema`` object; one repair attempt; else ``InvalidModelOutput``.

    ``call`` defaults to ``call_model``; ``call_kwargs`` (settings, fallbacks, prices...) are
    passed to it for both calls. Each call has its own ``call_id``."""
    if call is None:
        from handlers.llm.model_call import call_model
        call = call_model
    response_format = response_format_for(schema)
    results: list[ModelResult] = []
    current = [dict(m) for m in messages]
    error: ObjectParseError | None = None
    for _ in range(2):
        result = await call(model, current, response_format=response_format, **call_kwargs)
        results.append(result)
        try:
            return ObjectResult(parse_object(schema, result.text), tuple(results))
        except ObjectParseError as exc:
            error = exc
            current = repair_messages(messages, result.text, exc)
    assert error is not None
    raise InvalidModelOutput(
        f"model output did not match {schema.__name__} after one repair attempt: {error}",
        details={"errors": error.errors, "output": results[-1].text[:2000],
                 "schema": schema.__name__},
        results=tuple(results))


def partial_object(text: str) -> dict[str, Any] | None:
    """The object a JSON prefix describes so far, or ``None`` if nothing usable yet.

    Closes open strings, arrays and objects; drops a trailing key without a value and an
    unfinished literal. ``partial_object('{"a": 1, "b": ["x", "y')`` is
    ``{"a": 1, "b": ["x", "y"]}``. Values are not validated against any schema."""
    start = text.find("{")
    if start < 0:
        return None
    body = text[start:]
    stack: list[str] = []
    in_string = escaped = False
    for ch in body:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
    candidate = body + ('"' if in_string else "")
    for _ in range(len(candidate)):
        attempt = candidate + "".join(reversed(stack))
        try:
            parsed = json.loads(attempt)
        except json.JSONDecodeError:
            candidate, stack = _trim(candidate, stack)
            if not candidate:
                return None
            continue
        return parsed if isinstance(parsed, dict) else None
    return None


def _trim(candidate: str, stack: list[str]) -> tuple[str, list[str]]:
    """Drop the last character (re-balancing the closer stack), and trailing separators."""
    last = candidate[-1]
    candidate = candidate[:-1]
    stack = list(stack)
    if last in "{[" and stack:
        stack.pop()
    elif last in "}]":
        stack.append(last)
    return candidate.rstrip().rstrip(",:").rstrip(), stack

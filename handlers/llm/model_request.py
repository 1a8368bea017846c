"""The litellm request of a model step, and the raw-response hook.

``build_request`` assembles the ``litellm.acompletion`` keyword arguments: model, messages,
the set ``CallSettings``, tools, tool choice, response format, and ``provider_options``.
Provider options are passed through to litellm as they are (``api_key``, ``api_base``,
``extra_headers``, ``reasoning_effort``...), except that a key naming a provider with a dict
value (``{"openai": {...}}``, as in Convex Agent) applies only to models of that provider.
litellm's own retries are disabled (``max_retries=0``): threadlog retries (``attempts.py``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from handlers.llm.call_settings import CallSettings
from handlers.llm.litellm_loader import load_litellm
from handlers.llm.redaction import redact
from handlers.llm.tools import Tool, tool_schemas

log = logging.getLogger(__name__)

RawResponseHandler = Callable[[dict[str, Any], dict[str, Any]], Awaitable[None] | None]
"""``handler(request, response)``: both redacted dicts; may be sync or async."""

ToolsArg = Sequence[Tool[Any] | Mapping[str, Any]] | Mapping[str, Tool[Any]] | None


def provider_of(model: str) -> str | None:
    """litellm's provider name for ``model`` (``openai``, ``scripted``...), or ``None``."""
    litellm = load_litellm()
    try:
        return str(litellm.get_llm_provider(model)[1])
    except Exception:
        return None


def build_request(model: str, provider: str | None, messages: Sequence[Mapping[str, Any]],
                  *, settings: CallSettings, tools: ToolsArg = None, tool_choice: Any = None,
                  response_format: Any = None,
                  provider_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The keyword arguments of ``litellm.acompletion`` for one attempt."""
    request: dict[str, Any] = {"model": model, "messages": [dict(m) for m in messages],
                               **settings.sampling_kwargs(), "max_retries": 0}
    if settings.timeout is not None:
        request["timeout"] = settings.timeout
    tool_list = list(tools.values()) if isinstance(tools, Mapping) else list(tools or ())
    if tool_list:
        request["tools"] = tool_schemas(tool_list)
        if tool_choice is not None:
            request["tool_choice"] = tool_choice
    if response_format is not None:
        request["response_format"] = response_format
    for key, value in (provider_options or {}).items():
        if isinstance(value, Mapping) and _is_provider_name(key):
            if key == provider:
                request.update(value)
        else:
            request[key] = value
    return request


def _is_provider_name(key: str) -> bool:
    litellm = load_litellm()
    return key in litellm.provider_list or key == "scripted"


def dump_response(response: Any) -> dict[str, Any]:
    """A litellm response as a plain dict, with the provider's response headers if known."""
    try:
        data: dict[str, Any] = response.model_dump()
    except Exception:
        data = {"repr": repr(response)}
    hidden = getattr(response, "_hidden_params", None)
    if isinstance(hidden, dict) and hidden.get("additional_headers"):
        data["headers"] = dict(hidden["additional_headers"])
    return data


async def report_raw_response(handler: RawResponseHandler | None, request: Mapping[str, Any],
                              response: Mapping[str, Any]) -> None:
    """Give ``handler`` the redacted request and response. A failing handler is logged and
    ignored: observability must not fail a generation."""
    if handler is None:
        return
    try:
        outcome = handler(redact(dict(request)), redact(dict(response)))
        if inspect.isawaitable(outcome):
            await outcome
    except Exception:
        log.warning("raw_response_handler failed", exc_info=True)

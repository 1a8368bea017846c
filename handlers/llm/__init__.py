"""The model-and-tools layer: litellm calls, tools, structured output, message conversion.

No dependency on NATS or the command machinery; litellm is imported lazily (first call).
Everything below is importable from ``handlers.llm``.

Model steps (``model_call``, ``model_stream``)::

    result = await call_model(model, messages, *, tools=None, tool_choice=None,
                              response_format=None, settings=CallSettings(), fallbacks=(),
                              provider_options=None, prices=None,
                              raw_response_handler=None, call_id=None)   # -> ModelResult
    stream = stream_model(...same..., abort=None)                        # -> ModelStream
    async for item in stream:        # TextDelta | ToolCallDelta ..., then the ModelResult
        ...
    stream.result                    # final, or partial after abort/cancel/mid-stream error

``ModelResult``: ``call_id`` (one per step, across retries and fallbacks), ``model``,
``provider``, ``text``, ``tool_calls`` (``ToolCall(id, name, args, raw_args, args_error)``),
``finish_reason``, ``usage`` (``events.Usage``), ``cost`` (USD), ``attempts``,
``response_id``, ``provider_metadata``, ``content_parts()``. Failures after retries raise
``ProviderError`` / ``RateLimited`` / ``ProviderTimeout`` / ``ProviderRejected`` /
``PromptTooLarge`` (codes in ``errors.py``).

Tools (``tools``, ``tool_execution``): ``@tool``, ``Tool``, ``ToolContext[CtxT]``,
``resolve_tools(agent, thread, call)``, ``execute_tool(tool, ctx, raw_args)`` and
``execute_tool_call(tools, ctx, call)`` (never raise for tool problems).

Structured output (``structured_output``): ``generate_object(model, messages, Schema, ...)``
-> ``ObjectResult(object, results)`` or ``InvalidModelOutput``; ``response_format_for``,
``parse_object``, ``partial_object``.

Messages (``messages``): ``to_chat_messages``, ``message_to_chat``, ``assistant_message``,
``tool_messages``, ``from_chat_message``, ``remove_orphaned_tool_calls``,
``remove_orphaned_chat_tool_calls``, ``ContextMessage``.

Embeddings: ``embed_texts(model, texts)`` -> ``EmbeddingResult``. Scripted model:
``scripted`` (the ``ScriptBook``), ``Reply``; models ``scripted/<name>``. Secrets:
``redact``.
"""

from handlers.llm.call_settings import DEFAULT_SETTINGS, NO_BACKOFF, Backoff, CallSettings
from handlers.llm.embeddings import EmbeddingResult, embed_texts
from handlers.llm.errors import (
    InvalidModelOutput,
    PromptTooLarge,
    ProviderError,
    ProviderRejected,
    ProviderTimeout,
    RateLimited,
)
from handlers.llm.messages import (
    ContextMessage,
    MessageLike,
    assistant_message,
    from_chat_message,
    message_to_chat,
    remove_orphaned_chat_tool_calls,
    remove_orphaned_tool_calls,
    to_chat_messages,
    tool_messages,
)
from handlers.llm.model_call import call_model
from handlers.llm.model_request import RawResponseHandler
from handlers.llm.model_stream import ModelStream, stream_model
from handlers.llm.redaction import redact
from handlers.llm.results import (
    ModelResult,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    parse_tool_call,
)
from handlers.llm.scripted import Reply, ScriptBook, ScriptedToolCall, scripted
from handlers.llm.structured_output import (
    ObjectResult,
    generate_object,
    parse_object,
    partial_object,
    response_format_for,
)
from handlers.llm.tool_execution import execute_tool, execute_tool_call
from handlers.llm.tools import Tool, ToolContext, resolve_tools, tool, tool_schemas
from handlers.llm.usage_and_cost import ModelPrice, cost_of, usage_from_litellm

__all__ = [
    "DEFAULT_SETTINGS", "NO_BACKOFF", "Backoff", "CallSettings", "ContextMessage",
    "EmbeddingResult", "InvalidModelOutput", "MessageLike", "ModelPrice", "ModelResult",
    "ModelStream", "ObjectResult", "PromptTooLarge", "ProviderError", "ProviderRejected",
    "ProviderTimeout", "RateLimited", "RawResponseHandler", "Reply", "ScriptBook",
    "ScriptedToolCall", "StreamEvent", "TextDelta", "Tool", "ToolCall", "ToolCallDelta",
    "ToolContext", "assistant_message", "call_model", "cost_of", "embed_texts",
    "execute_tool", "execute_tool_call", "from_chat_message", "generate_object",
    "message_to_chat", "parse_object", "parse_tool_call", "partial_object", "redact",
    "remove_orphaned_chat_tool_calls", "remove_orphaned_tool_calls", "resolve_tools",
    "response_format_for", "scripted", "stream_model", "to_chat_messages", "tool",
    "tool_messages", "tool_schemas", "usage_from_litellm",
]

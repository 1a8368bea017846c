"""What the scripted model answers when nothing is queued for it (demo, smoke tests).

In order:

1. a ``response_format`` with a JSON schema -> a JSON object valid for it
   (``schema_values.example_for_schema``); ``{"type": "json_object"}`` -> ``{"answer": ...}``;
2. the last message is a tool result -> text reporting each result of the latest tool step
   (``"get_weather returned: {...}"``);
3. tools are offered and the last user message names one of them (``get_weather`` or
   ``get weather``, case-insensitive) -> one call to the first such tool, with example
   arguments from its parameter schema;
4. otherwise an echo: ``"You said: <last user text>"``.

Because step 2 answers with text, a tool named in the prompt is called exactly once.
"""

from __future__ import annotations

import json
from typing import Any

from handlers.llm.scripted.replies import Reply
from handlers.llm.scripted.schema_values import example_for_schema
from handlers.llm.scripted.script_book import ScriptedRequest


def default_reply(request: ScriptedRequest) -> Reply:
    schema_reply = _structured_reply(request)
    if schema_reply is not None:
        return schema_reply
    messages = request.messages
    if messages and messages[-1].get("role") == "tool":
        return Reply.text(_report_tool_results(messages))
    user_text = _last_user_text(messages)
    for tool in request.tools or ():
        function = tool.get("function", {})
        name = str(function.get("name", ""))
        if name and _mentions(user_text, name):
            args = example_for_schema(function.get("parameters") or {"type": "object"})
            return Reply.tool_call(name, args if isinstance(args, dict) else {})
    return Reply.text(f"You said: {user_text}" if user_text else "Hello! How can I help?")


def _structured_reply(request: ScriptedRequest) -> Reply | None:
    fmt = request.response_format
    if fmt is None:
        return None
    if isinstance(fmt, type) and hasattr(fmt, "model_json_schema"):
        return Reply.json(example_for_schema(fmt.model_json_schema()))
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return Reply.json(example_for_schema(schema or {"type": "object"}))
    if fmt.get("type") == "json_object":
        return Reply.json({"answer": _last_user_text(request.messages)})
    return None


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _text_of(message)
    return ""


def _mentions(text: str, tool_name: str) -> bool:
    lowered = text.lower()
    name = tool_name.lower()
    return name in lowered or name.replace("_", " ") in lowered


def _report_tool_results(messages: list[dict[str, Any]]) -> str:
    names: dict[str, str] = {}
    for message in messages:
        for call in message.get("tool_calls") or ():
            names[str(call.get("id"))] = str(call.get("function", {}).get("name", "tool"))
    trailing: list[dict[str, Any]] = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        trailing.append(message)
    lines = []
    for message in reversed(trailing):
        name = message.get("name") or names.get(str(message.get("tool_call_id")), "tool")
        content = message.get("content")
        shown = content if isinstance(content, str) else json.dumps(content)
        lines.append(f"{name} returned: {shown}")
    return "\n".join(lines)

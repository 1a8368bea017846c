"""Conversion between threadlog content parts and chat messages; orphan removal."""

from __future__ import annotations

from typing import Any

from events.content import TextPart, ToolCallPart, ToolResultPart
from handlers.llm import (
    ContextMessage,
    from_chat_message,
    remove_orphaned_chat_tool_calls,
    remove_orphaned_tool_calls,
    to_chat_messages,
)

CALL = ToolCallPart(tool_call_id="c1", tool_name="get_weather", args={"city": "Paris"})
RESULT = ToolResultPart(tool_call_id="c1", tool_name="get_weather", result={"sky": "sunny"})


def test_threadlog_messages_become_chat_messages() -> None:
    messages = [
        ContextMessage("user", [TextPart(text="Weather?")]),
        ContextMessage("assistant", [TextPart(text="Checking."), CALL]),
        ContextMessage("tool", [RESULT,
                                ToolResultPart(tool_call_id="c2", tool_name="x",
                                               result="boom", is_error=True)]),
        ContextMessage("assistant", [TextPart(text="Sunny.")]),
    ]
    assert to_chat_messages(messages, system="Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"sky": "sunny"}'},
        {"role": "tool", "tool_call_id": "c2", "content": "Error: boom"},
        {"role": "assistant", "content": "Sunny."},
    ]


def test_an_assistant_message_with_only_tool_calls_has_null_content() -> None:
    (chat,) = to_chat_messages([ContextMessage("assistant", [CALL])])
    assert chat["content"] is None and len(chat["tool_calls"]) == 1


def test_chat_messages_convert_back_to_parts() -> None:
    back = from_chat_message({"role": "assistant", "content": "Checking.", "tool_calls": [
        {"id": "c1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]})
    assert back == ContextMessage("assistant", [TextPart(text="Checking."), CALL])
    tool = from_chat_message({"role": "tool", "tool_call_id": "c1", "content": "Error: no"},
                             tool_names={"c1": "get_weather"})
    assert tool.content == [ToolResultPart(tool_call_id="c1", tool_name="get_weather",
                                           result="no", is_error=True)]


def test_orphaned_calls_and_results_are_removed_from_threadlog_messages() -> None:
    orphan_call = ToolCallPart(tool_call_id="c9", tool_name="t", args={})
    orphan_result = ToolResultPart(tool_call_id="c8", tool_name="t", result=1)
    user = ContextMessage("user", [TextPart(text="hi")])
    messages = [
        user,
        ContextMessage("assistant", [TextPart(text="Let me see."), CALL, orphan_call]),
        ContextMessage("tool", [RESULT]),
        ContextMessage("tool", [orphan_result]),
        ContextMessage("assistant", [orphan_call]),
    ]
    cleaned = remove_orphaned_tool_calls(messages)
    assert cleaned[0] is user
    assert cleaned == [
        user,
        ContextMessage("assistant", [TextPart(text="Let me see."), CALL]),
        ContextMessage("tool", [RESULT]),
    ]


def test_orphaned_calls_and_results_are_removed_from_chat_messages() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "t", "arguments": "{}"}}
    orphan = {"id": "c9", "type": "function", "function": {"name": "t", "arguments": "{}"}}
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [call, orphan]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        {"role": "tool", "tool_call_id": "c7", "content": "stray"},
        {"role": "assistant", "content": None, "tool_calls": [orphan]},
        {"role": "assistant", "content": "text stays", "tool_calls": [orphan]},
    ]
    assert remove_orphaned_chat_tool_calls(messages) == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        {"role": "assistant", "content": "text stays"},
    ]
    assert len(messages[1]["tool_calls"]) == 2  # input untouched

"""Deterministic token counts for the scripted model: words and punctuation marks.

Not a real tokenizer: cheap, stable across versions, and good enough for usage records and
billing tests. ``count_tokens("Hello, world!") == 4``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

_TOKEN = re.compile(r"\w+|[^\w\s]")


@lru_cache(maxsize=16_384)
def count_tokens(text: str) -> int:
    """Cached: a thread's context repeats the same messages turn after turn."""
    return len(_TOKEN.findall(text))


def count_message_tokens(messages: Iterable[dict[str, Any]]) -> int:
    """Tokens of a chat prompt: each message's text content and tool call arguments."""
    total = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            total += count_tokens(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    total += count_tokens(part["text"])
        for call in message.get("tool_calls") or ():
            function = call.get("function", {}) if isinstance(call, dict) else {}
            total += count_tokens(str(function.get("name", "")))
            total += count_tokens(str(function.get("arguments", "")))
    return total


def count_reply_tokens(text: str, tool_calls: Iterable[tuple[str, Any]]) -> int:
    """Tokens of an answer: its text plus each tool call's name and JSON arguments."""
    total = count_tokens(text)
    for name, args in tool_calls:
        total += count_tokens(name) + count_tokens(args if isinstance(args, str)
                                                   else json.dumps(args))
    return total

"""The demo's live tail: the events of the user's threads as the user's own connection
receives them (``live.<user>.thread.>``, relayed from the log with their sequence).

Each event prints as one dim line (sequence, type, the fields that matter) as it
arrives; while model text streams, lines are held and printed right after, so a line
never splits an answer. Model content is printed as text, never as markup.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from rich.console import Console
from rich.text import Text

from handlers.client import Client
from handlers.live_relay import SEQ_HEADER


def describe(event_type: str, data: dict[str, Any]) -> str:
    """One line of what an event says (never its whole content)."""
    if event_type in ("message_saved", "message_finalized"):
        parts = data.get("content") or []
        bits = [data.get("role") or "", data.get("status") or ""]
        for p in parts:
            if p.get("type") == "tool_call":
                bits.append(f"tool_call {p.get('tool_name')}({json.dumps(p.get('args'))})")
            elif p.get("type") == "tool_result":
                bits.append(f"tool_result {p.get('tool_name')} -> "
                            f"{json.dumps(p.get('result'))[:60]}")
            elif p.get("type") == "text" and p.get("text"):
                text = str(p["text"]).replace("\n", " ")
                bits.append(repr(text[:40] + ("..." if len(text) > 40 else "")))
        usage = data.get("usage") or {}
        if usage.get("total_tokens"):
            bits.append(f"{usage['total_tokens']} tokens")
        if data.get("error"):
            bits.append(f"error: {data['error']}")
        return " ".join(b for b in bits if b)
    if event_type.startswith("tool_call_"):
        tail = data.get("args") if event_type == "tool_call_requested" else data.get("result")
        return f"{data.get('tool_name')} {json.dumps(tail)[:60] if tail is not None else ''}"
    if event_type == "thread_created":
        return f"title={data.get('title')!r}"
    return " ".join(f"{k}={v}" for k, v in data.items()
                    if isinstance(v, (str, int)) and k not in ("thread_id", "user_id"))[:100]


class EventTail:
    """Prints the user's live thread events; :meth:`caught_up` waits (bounded) for a
    sequence to have been printed."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.last_seq = 0
        self.printed = 0
        self._held: list[Text] | None = None
        self._sub: Subscription | None = None
        self._seen = asyncio.Condition()

    @classmethod
    async def start(cls, client: Client, console: Console) -> EventTail:
        tail = cls(console)
        tail._sub = await client.nc.subscribe(f"live.{client.user_id}.thread.>",
                                              cb=tail._on_msg)
        await client.nc.flush()
        return tail

    async def _on_msg(self, msg: Msg) -> None:
        try:
            env = json.loads(msg.data)
            seq = int((msg.headers or {}).get(SEQ_HEADER, "0"))
        except (ValueError, TypeError):
            return
        event_type = msg.subject.rsplit(".", 1)[-1]
        line = Text(f"    log #{seq:<4} {event_type:<22} "
                    f"{describe(event_type, env.get('data') or {})}", style="dim cyan")
        if self._held is not None:
            self._held.append(line)
        else:
            self.console.print(line, overflow="ellipsis", no_wrap=True)
        self.printed += 1
        async with self._seen:
            self.last_seq = max(self.last_seq, seq)
            self._seen.notify_all()

    def hold(self) -> None:
        """Hold lines (while text streams on the current line)."""
        self._held = []

    def release(self) -> None:
        held, self._held = self._held or [], None
        for line in held:
            self.console.print(line, overflow="ellipsis", no_wrap=True)

    async def caught_up(self, seq: int, timeout: float = 3.0) -> bool:
        """Wait until the event at ``seq`` (or later) has arrived; False after ``timeout``
        (the live subject is core NATS: an event can be missed, the log keeps it)."""
        try:
            async with asyncio.timeout(timeout), self._seen:
                await self._seen.wait_for(lambda: self.last_seq >= seq)
            return True
        except TimeoutError:
            return False

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

"""The model's context from the thread state: chat messages of final messages are
converted once (cached on the state) and handed out as copies."""

from __future__ import annotations

from events import MessageFinalized, MessageSaved, TextPart, ToolCallPart
from handlers.agents.context import build_context
from handlers.agents.definition import Agent
from handlers.thread_state import ThreadState

AGENT = Agent(name="a", model="scripted/a", instructions="Be brief.")


def saved(mid: str, order: int, step: int, role: str, *parts: object,
          status: str = "success") -> MessageSaved:
    return MessageSaved(message_id=mid, thread_id="t", order=order, step_order=step,
                        role=role, content=list(parts), status=status)  # type: ignore[arg-type]


def test_conversions_are_cached_copies_and_follow_content_changes() -> None:
    st = ThreadState("t", exists=True)
    st.apply(saved("u0", 0, 0, "user", TextPart(text="hi")), 1)
    st.apply(saved("a0", 0, 1, "assistant", status="pending"), 2)
    st.apply(MessageFinalized(message_id="a0", thread_id="t", status="success",
                              content=[TextPart(text="hello")]), 3)
    first = build_context(st, AGENT, 1, 0)
    assert first == [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "hi"},
                     {"role": "assistant", "content": "hello"}]
    first[2]["content"] = "changed by a context handler"
    assert build_context(st, AGENT, 1, 0)[2]["content"] == "hello"
    st.apply(MessageFinalized(message_id="a0", thread_id="t", status="success",
                              content=[TextPart(text="hello again")]), 4)
    assert build_context(st, AGENT, 1, 0)[2]["content"] == "hello again"


def test_an_orphaned_tool_call_is_dropped_and_its_text_kept() -> None:
    st = ThreadState("t", exists=True)
    st.apply(saved("u0", 0, 0, "user", TextPart(text="hi")), 1)
    st.apply(saved("a0", 0, 1, "assistant", TextPart(text="let me see"),
                   ToolCallPart(tool_call_id="c1", tool_name="t", args={})), 2)
    assert build_context(st, AGENT, 1, 0)[1:] == [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "let me see"}]

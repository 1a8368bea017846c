"""The model's context from the thread state: chat messages of final messages are
converted once (cached on the state) and handed out as copies."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from events import MessageFinalized, MessageSaved, TextPart, ToolCallPart
from handlers.agents.context import _recent, build_context
from handlers.agents.definition import Agent
from handlers.threads.state import ThreadState

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


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 3), st.sampled_from(
    ["success", "pending", "failed"]), st.booleans()), max_size=60),
       st.integers(1, 12), st.integers(0, 32), st.integers(0, 3), st.booleans())
def test_recent_messages_read_from_the_tail_equal_a_full_sort(
        saves: list[tuple[int, int, str, bool]], limit: int, order: int, step: int,
        in_order: bool) -> None:
    """Whatever order messages were saved in (steps answering old prompts, re-saves), the
    context's recent messages are the last ``limit`` eligible ones by (order, step)."""
    if in_order:  # the usual case, read from the tail
        saves = sorted({(o, s): (o, s, st_, False) for o, s, st_, _ in saves}.values())
    state = ThreadState("t1")
    for i, (o, s, status, resave) in enumerate(saves):
        mid = f"m{i // 2}" if resave else f"m{i}"
        state.apply(MessageSaved(message_id=mid, thread_id="t1", order=o, step_order=s,
                                 role="user", content=[TextPart(text=f"x{i}")], status=status))
    expected = sorted((m for m in state.recent.values() if m.status == "success"
                       and (m.order, m.step_order) < (order, step)),
                      key=lambda m: (m.order, m.step_order))[-limit:]
    assert state.recent_in_order or not in_order
    got = _recent(state, limit, (order, step), exclude_tools=False)
    assert [m.message_id for m in got] == [m.message_id for m in expected]

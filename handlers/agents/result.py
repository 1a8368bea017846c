"""What a generation returns, and the thread-level options it resolves.

Guarantees: :meth:`GenerationResult.to_dict` is the reply body of ``cmd.agent.generate``
(the same whether the generation ran now, was resumed after a crash, or is rebuilt from
the thread's events for a re-sent command id).

Failure modes: none (plain data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from events import MessageEmbedded, MessageFinalized, Usage
from events.catalogue import Event
from handlers.agents.definition import Agent, UsageHandler
from handlers.threads.state import ThreadState


@dataclass
class GenerationResult:
    thread_id: str
    prompt_message_id: str | None
    message_id: str | None
    order: int | None
    text: str
    object: Any = None
    status: str = "success"
    finish_reason: str | None = None
    steps: int = 0
    usage: Usage = field(default_factory=Usage)
    cost: float = 0.0
    seq: int = 0
    awaiting_approval: list[str] = field(default_factory=list)
    persist: bool = field(default=True, repr=False)
    usage_handler: UsageHandler | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"thread_id": self.thread_id, "prompt_message_id": self.prompt_message_id,
                "message_id": self.message_id, "order": self.order, "text": self.text,
                "object": self.object, "status": self.status,
                "finish_reason": self.finish_reason, "steps": self.steps,
                "usage": self.usage.model_dump(), "cost": self.cost,
                "awaiting_approval": self.awaiting_approval}


@dataclass
class ThreadOptions:
    """Thread-level overrides (in-process): tools and usage handler for one thread."""

    tools: list[Any] | None = None
    usage_handler: UsageHandler | None = None


def add_usage(a: Usage, b: Usage) -> Usage:
    return Usage(**{k: getattr(a, k) + getattr(b, k) for k in Usage.model_fields})


def finalized_already(state: ThreadState, events: list[Event]) -> bool:
    """Whether ``events`` finalize a message that is no longer pending (an abort taken by
    another process finalized it: ``handlers.agents.abort``)."""
    for e in events:
        if isinstance(e, MessageFinalized):
            info = state.messages.get(e.message_id)
            if info is not None and info.status != "pending":
                return True
    return False


def embedded(agent: Agent, message_id: str, thread_id: str, vector: list[float] | None
             ) -> list[Event]:
    """The ``message_embedded`` event of ``vector`` (none without a vector)."""
    if vector is None or not agent.embedding_model:
        return []
    return [MessageEmbedded(message_id=message_id, thread_id=thread_id,
                            model=agent.embedding_model, dimensions=len(vector),
                            vector=vector)]


def abort_key(thread_id: str, message_id: str) -> str:
    """The key of a running generation's abort event: the thread and its pending message
    (message ids are unique per thread only)."""
    return f"{thread_id}.{message_id}"

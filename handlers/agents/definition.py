"""``Agent``: a named model with instructions, tools, limits and hooks (Convex Agent's
constructor, in Python). Agents are registered with the handlers app; any agent can
generate in any thread."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from events import NotFound, UsageRecorded
from handlers.canvas.context import SnippetOptions
from handlers.llm.call_settings import CallSettings

UsageHandler = Callable[[UsageRecorded], Awaitable[None] | None]
RawResponseHandler = Callable[[dict[str, Any], dict[str, Any]], Awaitable[None] | None]
ContextHandler = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
StorageMode = Literal["prompt_and_output", "all", "none"]


@dataclass(frozen=True)
class ContextOptions:
    """Which earlier messages the model sees: the most recent ``recent_messages`` that
    succeeded, up to the prompt's order; tool messages unless ``exclude_tool_messages``."""

    recent_messages: int = 100
    exclude_tool_messages: bool = False
    search_messages: int = 0
    """Search hits of the prompt over earlier messages to add (0: off), each widened by
    ``message_range``. Needs the projector (``query.messages.search``); skipped with a
    warning when none answers."""
    text_search: bool = True
    """Rank earlier messages by the prompt's words (with ``search_messages`` > 0)."""
    vector_search: bool = False
    """Rank earlier messages by the cosine similarity of their embeddings with the
    prompt's (with ``search_messages`` > 0), merged with the text hits by reciprocal rank
    fusion. Needs the agent's ``embedding_model`` (an Agent without one is refused at
    construction); only messages embedded by that model are compared."""
    vector_score_threshold: float | None = None
    """Minimum cosine similarity of a vector hit (None: any)."""
    search_other_threads: bool = False
    """Search all of the user's threads, not only this one."""
    message_range: tuple[int, int] = (2, 1)
    """Messages (by order) before and after each hit that come with it."""
    canvas: SnippetOptions | None = None
    """Reference snippets of canvas edits (recent, selected elements, text/vector matches
    under a token budget). Included when set, when the agent has canvas tools, or when the
    command names a canvas selection; ``None`` then means the defaults."""


@dataclass
class Agent:
    name: str
    model: str
    instructions: str | None = None
    tools: list[Any] = field(default_factory=list)
    max_steps: int = 5
    call_settings: CallSettings = field(default_factory=CallSettings)
    provider_options: dict[str, Any] = field(default_factory=dict)
    fallback_models: tuple[str, ...] = ()
    embedding_model: str | None = None
    """litellm embedding model. With it, each saved generation embeds its prompt and its
    final text (``message_embedded`` events, usage of kind ``embedding``) so later vector
    searches find them; canvas context adds vector matches of edits."""
    context_options: ContextOptions = field(default_factory=ContextOptions)
    storage: StorageMode = "prompt_and_output"
    usage_handler: UsageHandler | None = None
    raw_response_handler: RawResponseHandler | None = None
    context_handler: ContextHandler | None = None
    custom_context: Any = None

    def __post_init__(self) -> None:
        if self.context_options.vector_search and not self.embedding_model:
            raise ValueError(f"agent {self.name!r}: context_options.vector_search needs an "
                             f"embedding_model")


class AgentRegistry:
    def __init__(self, agents: list[Agent] | None = None) -> None:
        self._agents: dict[str, Agent] = {}
        for a in agents or []:
            self.add(a)

    def add(self, agent: Agent) -> Agent:
        self._agents[agent.name] = agent
        return agent

    def get(self, name: str) -> Agent:
        try:
            return self._agents[name]
        except KeyError:
            raise NotFound(f"unknown agent {name!r}", details={"agent": name,
                           "known": sorted(self._agents)}, code="unknown_agent") from None

    def names(self) -> list[str]:
        return sorted(self._agents)

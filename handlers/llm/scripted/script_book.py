"""The per-model queues of scripted replies, and the record of requests received.

One process-wide ``ScriptBook`` (``handlers.llm.scripted.scripted``) backs every
``scripted/<name>`` model. Queues are keyed by ``<name>``; a call pops the next reply of its
model's queue, or falls back to the default behaviour (``default_behaviour.py``) when the
queue is empty. Thread-safe (litellm may run sync calls in worker threads).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from handlers.llm.scripted.replies import Reply


@dataclass(frozen=True)
class ScriptedRequest:
    """What the scripted model received: messages, tools, response format, other params."""

    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    response_format: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    stream: bool = False


REQUEST_LOG = 1_000
"""Requests kept per model (a long-running demo or benchmark must not keep them all)."""


class ScriptBook:
    """Queues of replies per model name, a log of requests, and the per-chunk delay."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Reply]] = {}
        self._requests: dict[str, deque[ScriptedRequest]] = {}
        self.chunk_delay: float = 0.0
        """Seconds to wait before each streamed chunk (and once per non-streamed reply)."""
        self._latency: dict[str, float] = {}
        self._responders: dict[str, Callable[[ScriptedRequest], Reply]] = {}

    def configure(self, model: str, *, latency_s: float | None = None,
                  responder: Callable[[ScriptedRequest], Reply] | None = None) -> None:
        """Per-model options: ``latency_s`` before every reply (a slow provider, for
        benchmarks), ``responder`` answering when nothing is queued (instead of the
        default behaviour; it may look at the request, e.g. count the tool results)."""
        name = _name(model)
        with self._lock:
            if latency_s is not None:
                self._latency[name] = latency_s
            if responder is not None:
                self._responders[name] = responder

    def latency_of(self, model: str) -> float:
        """Seconds ``model`` waits before replying (``configure(latency_s=...)``)."""
        return self._latency.get(_name(model), 0.0)

    def script(self, model: str, replies: Iterable[Reply]) -> None:
        """Append replies to the queue of ``model`` (``"x"`` or ``"scripted/x"``)."""
        name = _name(model)
        with self._lock:
            self._queues.setdefault(name, deque()).extend(replies)

    def pending(self, model: str) -> int:
        """How many scripted replies of ``model`` are still queued."""
        with self._lock:
            return len(self._queues.get(_name(model), ()))

    def requests(self, model: str) -> list[ScriptedRequest]:
        """The last ``REQUEST_LOG`` requests ``model`` received, oldest first (a copy)."""
        with self._lock:
            return list(self._requests.get(_name(model), ()))

    def reset(self, model: str | None = None) -> None:
        """Forget the queue and requests of ``model``, or of every model and the delay."""
        with self._lock:
            if model is None:
                self._queues.clear()
                self._requests.clear()
                self._latency.clear()
                self._responders.clear()
                self.chunk_delay = 0.0
            else:
                self._queues.pop(_name(model), None)
                self._requests.pop(_name(model), None)
                self._latency.pop(_name(model), None)
                self._responders.pop(_name(model), None)

    def take(self, request: ScriptedRequest) -> Reply | None:
        """Record ``request`` and pop the next reply of its model (``None``: use the default)."""
        with self._lock:
            self._requests.setdefault(request.model, deque(maxlen=REQUEST_LOG)).append(request)
            queue = self._queues.get(request.model)
            if queue:
                return queue.popleft()
            responder = self._responders.get(request.model)
        return responder(request) if responder is not None else None


def _name(model: str) -> str:
    return model.removeprefix("scripted/")


scripted = ScriptBook()
"""The process-wide script book of the ``scripted/`` provider."""

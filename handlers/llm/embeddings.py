"""Embedding calls through ``litellm.aembedding`` (``scripted/...`` models included).

``embed_texts`` returns one vector per text, the usage and cost of the call, and a
``call_id`` for the usage record. The ``scripted/`` provider embeds offline with
``hash_embedding`` (64 dimensions, or N for ``scripted/<name>-N``). Failures are retried and
mapped like completions (``attempts.py``); there are no fallbacks: vectors of different
models are not comparable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from events.content import Usage
from events.ids import new_id
from handlers.llm.attempts import AttemptPlan
from handlers.llm.call_settings import DEFAULT_SETTINGS, CallSettings
from handlers.llm.litellm_loader import load_litellm
from handlers.llm.model_request import provider_of
from handlers.llm.usage_and_cost import ModelPrice, cost_of, usage_from_litellm


@dataclass(frozen=True)
class EmbeddingResult:
    call_id: str
    model: str
    provider: str | None
    vectors: list[list[float]]
    usage: Usage
    cost: float


async def embed_texts(model: str, texts: Sequence[str], *,
                      settings: CallSettings = DEFAULT_SETTINGS,
                      provider_options: Mapping[str, Any] | None = None,
                      prices: Mapping[str, ModelPrice] | None = None,
                      call_id: str | None = None) -> EmbeddingResult:
    """Embed ``texts`` (in order) with ``model``; raises a ``ProviderError`` subclass after
    the retries. An empty ``texts`` makes no call."""
    call_id = call_id or new_id()
    provider = provider_of(model)
    if not texts:
        return EmbeddingResult(call_id, model, provider, [], Usage(), 0.0)
    litellm = load_litellm()
    plan = AttemptPlan([model], settings, call_id, [provider])
    for attempt in plan:
        await plan.wait_before(attempt)
        try:
            async with asyncio.timeout(settings.timeout):
                response = await litellm.aembedding(model=model, input=list(texts),
                                                    max_retries=0,
                                                    **dict(provider_options or {}))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            plan.failed(exc, attempt)
            continue
        rows = sorted(response.data, key=lambda row: _get(row, "index"))
        vectors = [list(_get(row, "embedding")) for row in rows]
        usage = usage_from_litellm(getattr(response, "usage", None))
        return EmbeddingResult(call_id, model, provider, vectors, usage,
                               cost_of(model, usage, prices=prices))
    raise plan.error()


def _get(row: Any, name: str) -> Any:
    return row[name] if isinstance(row, Mapping) else getattr(row, name)

"""Token usage and cost of a call, from litellm's response objects and price map.

``usage_from_litellm`` reads prompt, completion and total tokens plus, where litellm exposes
them, reasoning tokens (``completion_tokens_details.reasoning_tokens``), cached input tokens
(``prompt_tokens_details.cached_tokens`` or Anthropic's ``cache_read_input_tokens``) and
cache write tokens (``cache_creation_input_tokens``). Missing fields count as 0.

``cost_of`` prices a call: a ``ModelPrice`` given for the model wins; else litellm's local
price map (``litellm.cost_per_token``); a model litellm does not know costs 0.0 (never an
error: billing must not fail a generation).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from events.content import Usage
from handlers.llm.litellm_loader import load_litellm


@dataclass(frozen=True)
class ModelPrice:
    """USD per token. Cached input tokens are billed at ``cached_input`` (default: ``input``),
    cache writes at ``cache_write`` (default: ``input``)."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None

    def cost(self, usage: Usage) -> float:
        cached = usage.cached_input_tokens
        written = usage.cache_write_tokens
        fresh = max(0, usage.prompt_tokens - cached - written)
        cached_price = self.input if self.cached_input is None else self.cached_input
        write_price = self.input if self.cache_write is None else self.cache_write
        return (fresh * self.input + cached * cached_price + written * write_price
                + usage.completion_tokens * self.output)


def _field(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def usage_from_litellm(raw: Any) -> Usage:
    """A threadlog ``Usage`` from a litellm ``Usage`` (or dict, or ``None`` -> zeros)."""
    prompt = _int(_field(raw, "prompt_tokens"))
    completion = _int(_field(raw, "completion_tokens"))
    total = _int(_field(raw, "total_tokens")) or prompt + completion
    reasoning = _int(_field(_field(raw, "completion_tokens_details"), "reasoning_tokens"))
    cached = (_int(_field(_field(raw, "prompt_tokens_details"), "cached_tokens"))
              or _int(_field(raw, "cache_read_input_tokens")))
    written = (_int(_field(raw, "cache_creation_input_tokens"))
               or _int(_field(_field(raw, "prompt_tokens_details"), "cache_creation_tokens")))
    return Usage(prompt_tokens=prompt, completion_tokens=completion,
                 total_tokens=max(total, prompt + completion), reasoning_tokens=reasoning,
                 cached_input_tokens=cached, cache_write_tokens=written)


_UNPRICED: set[str] = set()


def cost_of(model: str, usage: Usage, *,
            prices: Mapping[str, ModelPrice] | None = None) -> float:
    """USD cost of ``usage`` on ``model`` (see the module docstring); never raises."""
    if model.startswith("scripted/"):
        return prices[model].cost(usage) if prices and model in prices else 0.0
    if prices and model in prices:
        return prices[model].cost(usage)
    if (usage.prompt_tokens == 0 and usage.completion_tokens == 0) or model in _UNPRICED:
        return 0.0
    litellm = load_litellm()
    try:
        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cache_read_input_tokens=usage.cached_input_tokens,
            cache_creation_input_tokens=usage.cache_write_tokens,
        )
    except Exception:  # unknown model: billing never fails the call
        _UNPRICED.add(model)  # litellm's lookup failure is slow (~0.3 ms); remember it
        return 0.0
    return max(0.0, float(prompt_cost) + float(completion_cost))

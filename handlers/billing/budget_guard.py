"""Budget guard: refuse a generation that would take a user past their spend limit.

``check_budget(user_id, model, messages, max_tokens)`` runs first thing in a generation,
before the model is called and before anything is appended. With no limit (neither the
user's own ``ops.budget.set`` nor the configured default) it returns at once. Otherwise it
estimates the call's cost: prompt tokens by ``litellm.token_counter`` on the messages,
completion tokens = ``max_tokens`` (or ``assumed_completion_tokens`` when unset), priced
like usage (per-model ``ModelPrice`` override, else litellm's local price map; an unpriced
model estimates 0). It raises :class:`BudgetExceeded` (code ``budget_exceeded``) when the
spend so far has reached the limit, or spend + estimate would pass it.

The limit is soft under concurrency: generations checked at the same moment each see the
spend before the others' usage is recorded, and a call may cost more than estimated; the
overshoot is bounded by the calls in flight. A limit never refuses what was already spent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from events import ThreadlogError
from events.content import Usage
from handlers.billing.spend_ledger import BudgetStatus, SpendLedger
from handlers.llm.litellm_loader import load_litellm
from handlers.llm.usage_and_cost import ModelPrice, cost_of


class BudgetExceeded(ThreadlogError):
    """The generation would pass the user's spend limit for the billing period. Details:
    ``user_id``, ``period``, ``limit_usd``, ``spent_usd``, ``estimate_usd``, ``model``."""

    code = "budget_exceeded"


def estimate_prompt_tokens(model: str, messages: list[dict[str, Any]]) -> int:
    """Prompt tokens by litellm's counter; a counting failure falls back to chars / 4."""
    try:
        return int(load_litellm().token_counter(model=model, messages=messages))
    except Exception:  # a message shape the counter does not know: rough but safe
        return sum(len(str(m.get("content") or "")) for m in messages) // 4 + 1


class BudgetGuard:
    def __init__(self, ledger: SpendLedger, *,
                 prices: Mapping[str, ModelPrice] | None = None,
                 assumed_completion_tokens: int = 512) -> None:
        self.ledger = ledger
        self.prices = prices
        self.assumed_completion_tokens = assumed_completion_tokens

    def estimate_usd(self, model: str, messages: list[dict[str, Any]],
                     max_tokens: int | None) -> float:
        prompt = estimate_prompt_tokens(model, messages)
        completion = max_tokens if max_tokens is not None else self.assumed_completion_tokens
        usage = Usage(prompt_tokens=prompt, completion_tokens=completion,
                      total_tokens=prompt + completion)
        return cost_of(model, usage, prices=self.prices)

    async def check_budget(self, user_id: str, model: str, messages: list[dict[str, Any]],
                           max_tokens: int | None = None) -> BudgetStatus | None:
        """Return the status if the call may go ahead; raise :class:`BudgetExceeded`.
        ``None``: no limit applies to the user (:meth:`SpendLedger.unlimited`), nothing
        was read."""
        if self.ledger.unlimited(user_id):
            return None
        status = await self.ledger.status(user_id)
        if status.limit_usd is None:
            return status
        estimate = self.estimate_usd(model, messages, max_tokens)
        if status.spent_usd >= status.limit_usd or status.spent_usd + estimate > status.limit_usd:
            raise BudgetExceeded(
                f"user {user_id!r} would pass the spend limit of {status.limit_usd:.6f} USD "
                f"for {status.period} (spent {status.spent_usd:.6f}, this call ~{estimate:.6f})",
                details={"user_id": user_id, "period": status.period,
                         "limit_usd": status.limit_usd, "spent_usd": status.spent_usd,
                         "estimate_usd": estimate, "model": model})
        return status

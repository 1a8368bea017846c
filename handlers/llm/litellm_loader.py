"""The one place that imports litellm: lazily, offline, with the scripted provider registered.

Importing litellm costs ~2.5 s, so modules of this package import it only through
``load_litellm()`` at call time. The first call sets ``LITELLM_LOCAL_MODEL_COST_MAP=True``
(litellm would otherwise fetch its price map from the network), silences litellm's
"Provider List" banners, registers the ``scripted/`` provider, and lets threadlog's calls
skip litellm's success logging when no litellm callback is configured (``litellm_tuning``).
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

_litellm: ModuleType | None = None


def load_litellm() -> Any:
    """The litellm module, imported and set up once. Typed ``Any``: litellm has no stubs."""
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.suppress_debug_info = True
        from handlers.llm.scripted.provider import register_scripted_provider

        register_scripted_provider(litellm)
        from handlers.llm.litellm_tuning import install

        install(litellm)
        _litellm = litellm
    return _litellm


async def warm_up() -> None:
    """Import litellm and make one offline call to the ``scripted/`` provider, so a
    process's first generations do not pay litellm's lazy setup (measured: a handler
    process that took its first 100 concurrent generations cold served them ~3 s late on
    2 cores; the import alone is ~2.5 s, the first call ~0.2 s more). Never raises: a
    failed warm-up only leaves the setup to the first real call."""
    import asyncio
    import logging

    try:
        litellm = await asyncio.to_thread(load_litellm)
        await litellm.acompletion(model="scripted/threadlog-warm-up",
                                  messages=[{"role": "user", "content": "warm up"}])
    except Exception as exc:
        logging.getLogger(__name__).warning("litellm warm-up failed: %s", exc)

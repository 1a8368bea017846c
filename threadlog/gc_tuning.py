"""Keep the garbage collector off the objects a serving process keeps for its lifetime.

After start-up a handler process holds a few hundred thousand long-lived objects (litellm
alone imports ~2,500 modules with their classes, pydantic models and caches). CPython's
collector walks all of them at every full (oldest-generation) collection, and a busy
process allocates enough to trigger one every few hundred milliseconds: measured with
``threadlog bench concurrency`` (200 concurrent generations), 0.3 s of the 0.8 s the
handler took to start them all went to collections (one full collection of a
process with litellm loaded: ~0.25 s for ~410,000 objects).

:func:`frozen_startup` moves everything alive once start-up is done into the permanent
generation (``gc.freeze``), which collections skip; what is allocated afterwards is
collected as before. Guarantees and limits: objects frozen are never collected while
frozen, so a frozen object that later becomes cyclic garbage stays in memory until the
last :func:`frozen_startup` of the process ends (``gc.unfreeze`` then returns everything
to the oldest generation): a process that starts and stops many runtimes (a test suite)
does not accumulate them. Nested or concurrent runtimes share one freeze: the first
freezes, the last unfreezes (an inner runtime freezes nothing more, so the garbage of a
long-lived outer one is not pinned by short-lived inner ones). Not thread-safe: call it
from one event loop's thread.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

_depth = 0


@contextlib.contextmanager
def frozen_startup() -> Iterator[None]:
    """Freeze every object now tracked (no collection first: one full collection costs
    ~0.25 s with litellm loaded; garbage frozen with the rest is reclaimed after the
    unfreeze), and unfreeze when the last user exits."""
    global _depth
    if _depth == 0:
        gc.freeze()
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            gc.unfreeze()


def frozen_count() -> int:
    """Objects in the permanent generation now."""
    return gc.get_freeze_count()

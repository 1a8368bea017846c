"""Generation limits: a cap on generations running their steps (model calls) at once,
across every handler process, changeable live by operators (Convex Workpool's
``maxParallelism``, for generations). Off unless ``generation_parallelism`` is set.

The inner shape: ``slots`` (the permits on JetStream), ``gate`` (where generations
meet them: ``Generator.admission``), ``service`` (read and change the limit), ``app``
(``ops.generations.limit.*`` subscribers)."""

from handlers.generation_limits.app import (
    open_generation_slots,
    register_generation_limit_commands,
)
from handlers.generation_limits.errors import LimitNotEnabled
from handlers.generation_limits.gate import attach
from handlers.generation_limits.service import GenerationLimits
from handlers.generation_limits.slots import (
    MAX_PARALLELISM,
    GenerationSlots,
    SlotsConfig,
    SlotsLayout,
    SlotsStatus,
)

__all__ = ["MAX_PARALLELISM", "GenerationLimits", "GenerationSlots", "LimitNotEnabled",
           "SlotsConfig", "SlotsLayout", "SlotsStatus", "attach", "open_generation_slots",
           "register_generation_limit_commands"]

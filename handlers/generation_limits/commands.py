"""Generation-limit command and query models (strict input, like every command)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from handlers.commands import STRICT_INPUT
from handlers.generation_limits.slots import MAX_PARALLELISM


class SetGenerationLimit(BaseModel):
    """Set the limit on generations running their steps at once, across every process:
    ``0`` pauses (no generation starts its steps; running ones finish). Setting the same
    value again changes nothing (a re-sent command is harmless)."""

    model_config = STRICT_INPUT

    max_parallelism: int = Field(..., ge=0, le=MAX_PARALLELISM)


class GenerationLimitQuery(BaseModel):
    """The limit in force and the counts now (no fields)."""

    model_config = STRICT_INPUT

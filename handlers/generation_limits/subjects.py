"""Generation-limit subjects: operators only (``ops.>``: the operator and service roles
may publish there; a user or app connection is refused by the server)."""

from __future__ import annotations

SET_GENERATION_LIMIT = "ops.generations.limit.set"
GET_GENERATION_LIMIT = "ops.generations.limit.get"

ALL = [SET_GENERATION_LIMIT, GET_GENERATION_LIMIT]

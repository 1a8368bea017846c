"""Rate-limit subjects: operators only (``ops.>``: the operator and service roles may
publish there; a user or app connection is refused by the server)."""

from __future__ import annotations

SET_RATE_LIMITS = "ops.rate_limits.set"
GET_RATE_LIMITS = "ops.rate_limits.get"

ALL = [SET_RATE_LIMITS, GET_RATE_LIMITS]

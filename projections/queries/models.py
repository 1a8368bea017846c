"""The typed inputs of every query subject (validated with pydantic; bad input is an
``invalid_input`` error listing the fields).

Strict like the command models (``handlers.commands.STRICT_INPUT``, not imported here:
projections do not depend on handlers): ``"5"`` or ``true`` for an integer, a string for a
float and non-finite floats are refused."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, field_validator, model_validator

from events.content import MessageStatus
from events.ids import SafeId
from events.thread_events import MAX_EMBEDDING_DIMENSIONS
from projections.queries.fusion import RRF_K

MAX_PAGE = 500


class Query(BaseModel):
    """Fields every query takes: who asks, and the stream sequence it must see."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    user_id: SafeId
    min_seq: int | None = Field(None, ge=0, description="wait until the projection has "
                                "applied this stream sequence (read your writes)")
    wait_s: float | None = Field(None, gt=0, allow_inf_nan=False,
                                 description="how long to wait for min_seq "
                                 "(capped by the server's limit)")


class ThreadsList(Query):
    limit: int = Field(50, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(None, description="next_cursor of the previous page")
    order: Literal["asc", "desc"] = "desc"


class ThreadsGet(Query):
    thread_id: SafeId


class MessagesList(Query):
    """Newest first: by (order, step_order) descending, then save order."""

    thread_id: SafeId
    limit: int = Field(50, ge=1, le=MAX_PAGE)
    cursor: str | None = None
    exclude_tool_messages: bool = False
    statuses: list[MessageStatus] | None = Field(None, min_length=1)


class MessagesGet(Query):
    message_ids: list[SafeId] = Field(min_length=1, max_length=MAX_PAGE)


_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class UsageSummary(Query):
    period: str | None = Field(None, description="billing month YYYY-MM; omit for all")

    @field_validator("period")
    @classmethod
    def _check_period(cls, v: str | None) -> str | None:
        if v is not None and not _PERIOD.match(v):
            raise ValueError("period must be YYYY-MM")
        return v


class SqlQuery(Query):
    """Operators only (later issues add permissions): read-only SQL over the views."""

    sql: str = Field(min_length=1, max_length=100_000)
    max_rows: int | None = Field(None, ge=1)


class StatusQuery(Query):
    pass


class MessagesSearch(Query):
    """Text and/or vector search over successful messages, merged by reciprocal rank
    fusion. Text: every word of ``text`` (3+ letters) found, case insensitive, scores one.
    Vector: cosine similarity of ``vector`` with the messages embedded by ``model`` (the
    same dimensions; ``vector_score_threshold`` drops weaker matches). Each search keeps
    its best ``limit``; the fused best ``limit`` hits are widened by ``before``/``after``
    messages of their thread (by order)."""

    text: str | None = Field(None, min_length=1, max_length=2_000)
    vector: list[FiniteFloat] | None = Field(
        None, min_length=1, max_length=MAX_EMBEDDING_DIMENSIONS,
        description="query embedding (e.g. of the prompt); needs model")
    model: str | None = Field(None, min_length=1, max_length=200,
                              description="the embedding model of vector: only messages "
                              "embedded by it are compared")
    vector_score_threshold: float | None = Field(
        None, ge=-1, le=1, allow_inf_nan=False,
        description="minimum cosine similarity of a vector hit")
    rrf_k: int = Field(RRF_K, ge=1, le=10_000, description="reciprocal rank fusion "
                       "constant: a hit at rank r of a search scores 1/(rrf_k + r)")
    thread_id: SafeId | None = Field(None, description="this thread (only, unless "
                                     "all_threads)")
    all_threads: bool = Field(False, description="search every thread of the user")
    limit: int = Field(10, ge=1, le=100)
    before: int = Field(2, ge=0, le=20)
    after: int = Field(1, ge=0, le=20)
    exclude_tool_messages: bool = True
    max_order: int | None = Field(None, description="in thread_id, only messages with "
                                  "order below this (the prompt's)")

    @model_validator(mode="after")
    def _check_search(self) -> MessagesSearch:
        if self.text is None and self.vector is None:
            raise ValueError("give text, vector (with model), or both")
        if self.vector is not None:
            if self.model is None:
                raise ValueError("vector needs model (the embedding model that made it)")
            if not any(self.vector):
                raise ValueError("vector must not be all zeros (no direction to compare)")
        return self

"""The typed inputs of every query subject (validated with pydantic; bad input is an
``invalid_input`` error listing the fields)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from events.content import MessageStatus
from events.ids import SafeId

MAX_PAGE = 500


class Query(BaseModel):
    """Fields every query takes: who asks, and the stream sequence it must see."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: SafeId
    min_seq: int | None = Field(None, ge=0, description="wait until the projection has "
                                "applied this stream sequence (read your writes)")
    wait_s: float | None = Field(None, gt=0, description="how long to wait for min_seq "
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
    """Text search over successful messages: every word of ``text`` found (case
    insensitive) scores one; hits widened by ``before``/``after`` messages of their
    thread (by order)."""

    text: str = Field(min_length=1, max_length=2_000)
    thread_id: SafeId | None = Field(None, description="this thread (only, unless "
                                     "all_threads)")
    all_threads: bool = Field(False, description="search every thread of the user")
    limit: int = Field(10, ge=1, le=100)
    before: int = Field(2, ge=0, le=20)
    after: int = Field(1, ge=0, le=20)
    exclude_tool_messages: bool = True
    max_order: int | None = Field(None, description="in thread_id, only messages with "
                                  "order below this (the prompt's)")

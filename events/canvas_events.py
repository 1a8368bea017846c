"""Events of the canvas aggregate: ``events.canvas.<canvas_id>.<event_type>``.

A canvas belongs to a thread (``thread_id`` is in every payload) but is its own
aggregate: a canvas with 100k edits does not slow the thread's message commands down
(they never read canvas events), and the optimistic concurrency that ``base_version``
needs is per canvas, not per thread.

Versions: a canvas is at version 0 when created and every edit (reverts included) adds
one. The version is the edit count, dense and predictable (``base_version + 1``), unlike
the stream sequence, which is global to the stream; the stream sequence stays internal
(the append's expected version).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from events.catalogue import Event, register
from events.ids import SafeId


class CanvasEvent(Event):
    aggregate_type: ClassVar[str] = "canvas"


@register
class CanvasCreated(CanvasEvent):
    """A canvas in thread ``thread_id``, owned by ``user_id``, with its first document."""

    type: Literal["canvas_created"] = "canvas_created"
    canvas_id: SafeId
    thread_id: SafeId
    user_id: SafeId
    title: str | None = None
    document: dict[str, Any] = Field(default_factory=dict)


@register
class CanvasEdited(CanvasEvent):
    """One edit: the RFC 6902 ``ops`` applied to the document at ``base_version``.

    ``version`` is ``base_version + 1``. ``touched`` lists the element ids the ops
    changed; ``snippet`` holds ``{"before": {id: element | None}, "after": {...}}`` for
    them (``None``: absent). ``author`` is a user id or an agent name (``author_kind``
    says which). ``reverts`` is the version this edit undid, if it is a revert.
    Replaying the ``ops`` of every edit in version order rebuilds the document; the
    snippet is a record for readers and never needed for replay.
    """

    type: Literal["canvas_edited"] = "canvas_edited"
    canvas_id: SafeId
    thread_id: SafeId
    base_version: int = Field(ge=0)
    version: int = Field(ge=1)
    ops: list[dict[str, Any]]
    touched: list[str] = Field(default_factory=list)
    summary: str = ""
    snippet: dict[str, dict[str, Any]] = Field(default_factory=dict)
    author: str
    author_kind: Literal["user", "agent"] = "user"
    message_id: SafeId | None = None
    reverts: int | None = None

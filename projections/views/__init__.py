"""The registry of views. To add a view: write ``projections/views/<name>.py`` with a
:class:`projections.view.View` subclass and append an instance to :data:`VIEWS`.
"""

from __future__ import annotations

from projections.view import View
from projections.views.canvas import CanvasEditsView, CanvasStateView
from projections.views.invoices import InvoicesView
from projections.views.message_embeddings import MessageEmbeddingsView
from projections.views.messages import MessagesView
from projections.views.rejected_events import RejectedEventsView
from projections.views.threads import ThreadsView
from projections.views.tool_calls import ToolCallsView
from projections.views.usage import UsageView
from projections.views.workflows import WorkflowStepsView, WorkflowsView

VIEWS: list[View] = [ThreadsView(), MessagesView(), ToolCallsView(), UsageView(),
                     CanvasStateView(), CanvasEditsView(), InvoicesView(), MessageEmbeddingsView(),
                     RejectedEventsView()]
VIEWS += [WorkflowsView(), WorkflowStepsView()]


def view_names() -> list[str]:
    return [v.name for v in VIEWS]


def view_by_name(name: str) -> View:
    """The registered view called ``name``; ``KeyError`` listing the known views if none."""
    for v in VIEWS:
        if v.name == name:
            return v
    raise KeyError(f"unknown view {name!r}; known views: {', '.join(view_names())}")

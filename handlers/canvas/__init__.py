"""Canvases: JSON documents of elements edited with JSON Patch from a thread.

Public surface: :func:`register_canvas_commands` (the ``cmd.canvas.*`` subscribers),
:class:`CanvasService`, the schema to extend (:class:`CanvasSchema`,
:class:`CanvasDocument`, :class:`CanvasElement`), agent tools (:func:`canvas_tools`) and
context snippets (:func:`reference_snippets`, :func:`format_reference_message`,
:func:`canvas_context_messages`, :class:`SnippetOptions`).
"""

import events.canvas_events  # noqa: F401  (registers the canvas event types)
from handlers.canvas.app import register_canvas_commands
from handlers.canvas.context import (
    Snippet,
    SnippetOptions,
    canvas_context_messages,
    format_reference_message,
    reference_snippets,
)
from handlers.canvas.schema import CanvasDocument, CanvasElement, CanvasSchema
from handlers.canvas.service import CanvasService
from handlers.canvas.tools import canvas_tools

__all__ = [
    "CanvasDocument", "CanvasElement", "CanvasSchema", "CanvasService", "Snippet",
    "SnippetOptions", "canvas_context_messages", "canvas_tools", "format_reference_message",
    "reference_snippets", "register_canvas_commands",
]

"""``threadlog.App``: what an application brings to every threadlog process.

``App(agents=[...], workflows=Workflows(), canvas_schema=None)`` is loaded by
``threadlog serve --app pkg.module:app`` (see ``threadlog.app_loader``) or passed to
``running(settings, app=app)``: its agents are registered with the command handlers,
its workflows with the workflow worker (``threadlog.parts.workflows_part``), its canvas
schema with the canvas handlers.

Guarantees: a worker takes only runs of the (name, version) pairs its ``workflows``
defines (one durable consumer per pair), so a process started without a workflow
never takes its runs. Failure modes: none here; duplicate agent names are refused by
the agent registry when the runtime starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from handlers.agents.definition import Agent
from handlers.canvas.schema import CanvasSchema
from scheduler.workflows import Workflows


@dataclass(frozen=True)
class App:
    """Agents (with their tools), workflows and a canvas schema, loaded together."""

    agents: list[Agent] = field(default_factory=list)
    workflows: Workflows = field(default_factory=Workflows)
    canvas_schema: CanvasSchema | None = None


__all__ = ["App"]

"""The app ``tests/threadlog/test_serve_app.py`` loads with ``serve --app``."""

from __future__ import annotations

from typing import Any

from scheduler.workflows import Step, Workflows
from threadlog import Agent, App

workflows = Workflows()


@workflows.define("hold")
async def hold(step: Step, args: Any) -> Any:
    """Waits for an event named ``go`` (a run the CLI lists and cancels)."""
    return await step.await_event("go")


app = App(agents=[Agent(name="apphelper", model="scripted/serveapp")], workflows=workflows)
not_an_app = 42

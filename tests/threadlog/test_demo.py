"""``threadlog demo`` when the model misbehaves: one line per failure, no traceback, and
the rest of the demo goes on."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from handlers.llm.scripted import Reply, scripted
from threadlog import demo
from threadlog.settings import Settings


async def test_a_model_answering_bad_json_gives_one_line_and_the_demo_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = "scripted/demo-bad-json"

    def script(name: str) -> None:
        scripted.script(name, [
            Reply.text("an [answer] with brackets"),
            Reply.tool_call("get_weather", {"city": "Lisbon"}),
            Reply.text("Sunny."),
            Reply.invalid_json("Sure! Here is your plan: city Lisbon"),
            Reply.invalid_json("still not json"),
        ])

    monkeypatch.setattr(demo, "_script", script)
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False)
    try:
        await demo.run_demo(Settings(data_dir=tmp_path / "data", model=model), console)
    finally:
        scripted.reset(model)
    text = out.getvalue()
    assert "an [answer] with brackets" in text
    failed = [ln for ln in text.splitlines() if ln.startswith("failed:")]
    assert len(failed) == 1 and "Traceback" not in text, text
    assert "3. a structured object" in text and "stopped cleanly" in text

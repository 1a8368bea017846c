"""Every example's ``main()`` runs offline (embedded server, scripted model) and gives
the result it promises."""

from __future__ import annotations

import asyncio
from pathlib import Path

from examples import approval, fan_out, support, weather_fashion
from threadlog import Settings


def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


async def test_weather_then_fashion_chains_two_agents_on_one_thread(tmp_path: Path) -> None:
    out = await asyncio.to_thread(weather_fashion.main, settings(tmp_path))
    assert out["weather"] == "Sunny in Lisbon, 24 °C."
    assert out["advice"] == "A linen shirt, shorts and sunglasses."


async def test_support_answers_suggests_and_leaves_a_message(tmp_path: Path) -> None:
    out = await asyncio.to_thread(support.main, settings(tmp_path))
    assert out["answer"] == "Sorry about the delay: it ships today."
    assert out["suggestion"] == {"action": "refund the shipping", "priority": "high"}


async def test_fan_out_combines_parallel_generations(tmp_path: Path) -> None:
    out = await asyncio.to_thread(fan_out.main, settings(tmp_path))
    assert len(set(out["threads"])) == 3
    assert out["summary"] == ("- You said: One line about rivers\n"
                              "- You said: One line about mountains\n"
                              "- You said: One line about cities")


async def test_approval_is_sent_when_approved_and_times_out_otherwise(tmp_path: Path) -> None:
    out = await asyncio.to_thread(approval.main, settings(tmp_path))
    assert out["approved"]["status"] == "sent"
    assert out["approved"]["draft"] == "You said: Write to the customer about the refund"
    assert out["unanswered"] == {"status": "timed_out",
                                 "draft": "You said: Write to the customer about the delay"}

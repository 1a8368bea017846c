"""Structured output: validated objects, one repair attempt, partial objects."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from handlers.llm import (
    InvalidModelOutput,
    Reply,
    generate_object,
    parse_object,
    partial_object,
    scripted,
)
from handlers.llm.structured_output import ObjectParseError

ASK = [{"role": "user", "content": "Describe a city"}]


class City(BaseModel):
    name: str
    population: int = Field(ge=0)


async def test_the_default_scripted_answer_validates() -> None:
    result = await generate_object("scripted/obj-default", ASK, City)
    assert isinstance(result.object, City) and not result.repaired
    assert len(result.results) == 1


async def test_invalid_output_gets_one_repair_call_that_shows_the_errors() -> None:
    scripted.script("obj-repair", [Reply.invalid_json('{"name": "Paris", "population": -1}'),
                                   Reply.json({"name": "Paris", "population": 2100000})])
    result = await generate_object("scripted/obj-repair", ASK, City)
    assert result.object == City(name="Paris", population=2100000)
    assert result.repaired
    assert len({r.call_id for r in result.results}) == 2
    repair = scripted.requests("obj-repair")[1].messages
    assert repair[-2] == {"role": "assistant",
                          "content": '{"name": "Paris", "population": -1}'}
    assert "population" in repair[-1]["content"]
    assert "greater than or equal to 0" in repair[-1]["content"]


async def test_still_invalid_after_repair_raises_with_both_results() -> None:
    scripted.script("obj-fail", [Reply.invalid_json(), Reply.invalid_json("no json at all")])
    with pytest.raises(InvalidModelOutput) as caught:
        await generate_object("scripted/obj-fail", ASK, City)
    err = caught.value
    assert err.code == "invalid_model_output"
    assert err.details["output"] == "no json at all"
    assert err.details["errors"][0]["type"] == "json_invalid"
    assert len(err.results) == 2 and all(r.usage.total_tokens > 0 for r in err.results)


def test_parse_accepts_a_markdown_fence_and_reports_field_errors() -> None:
    assert parse_object(City, '```json\n{"name": "Rome", "population": 3}\n```').name == "Rome"
    with pytest.raises(ObjectParseError) as caught:
        parse_object(City, '{"name": "Rome"}')
    assert caught.value.errors[0]["loc"] == ["population"]


@pytest.mark.parametrize(("prefix", "expected"), [
    ("", None),
    ('{"na', {}),
    ('{"name": "Par', {"name": "Par"}),
    ('{"name": "Paris", "tags": ["a", "b', {"name": "Paris", "tags": ["a", "b"]}),
    ('{"name": "Paris", "population": 21', {"name": "Paris", "population": 21}),
    ('{"name": "Paris", "ok": tr', {"name": "Paris"}),
    ('{"a": {"b": [1, {"c": "x\\"y', {"a": {"b": [1, {"c": 'x"y'}]}}),
    ('{"name": "Paris"}', {"name": "Paris"}),
])
def test_partial_objects_from_json_prefixes(prefix: str, expected: object) -> None:
    assert partial_object(prefix) == expected

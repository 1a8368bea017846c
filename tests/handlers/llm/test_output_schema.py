"""Model output against a JSON schema: fences stripped, every error listed, bad schemas refused."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, Field, field_validator

from events import ValidationFailed
from handlers.llm.output_schema import (
    MAX_ERRORS,
    ObjectParseError,
    OutputSchema,
    check_output_schema,
    json_body,
)

TRIP = {"title": "Trip", "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"]}


@pytest.mark.parametrize("text", [
    '{"city": "Lisbon", "days": 3}',
    '  {"city": "Lisbon", "days": 3}\n',
    '```json\n{"city": "Lisbon", "days": 3}\n```',
    '```JSON\n{"city": "Lisbon", "days": 3}```',
    '```\n{"city": "Lisbon", "days": 3}\n```',
    'Here is the plan:\n```json\n{"city": "Lisbon", "days": 3}\n```\nEnjoy!',
])
def test_json_is_read_plain_or_from_a_code_fence(text: str) -> None:
    parsed = OutputSchema(TRIP).parse(text)
    assert parsed.value == {"city": "Lisbon", "days": 3}
    assert parsed.body == '{"city": "Lisbon", "days": 3}'


def test_json_holding_backticks_is_not_mistaken_for_a_fence() -> None:
    text = '{"city": "```x```", "days": 1}'
    assert json_body(text) == text


def test_a_wrong_type_and_a_missing_field_are_both_reported() -> None:
    with pytest.raises(ObjectParseError) as caught:
        OutputSchema(TRIP).parse('{"days": "three"}')
    errors = {(tuple(e["loc"]), e["type"]) for e in caught.value.errors}
    assert errors == {(("city",), "missing"), (("days",), "type")}


def test_text_without_json_is_json_invalid() -> None:
    with pytest.raises(ObjectParseError) as caught:
        OutputSchema(TRIP).parse("Lisbon, three days")
    assert [e["type"] for e in caught.value.errors] == ["json_invalid"]


def test_errors_are_bounded() -> None:
    schema = {"type": "array", "items": {"type": "integer"}}
    with pytest.raises(ObjectParseError) as caught:
        OutputSchema(schema).parse(json.dumps(["x" * 400] * 80))
    errors = caught.value.errors
    assert len(errors) == MAX_ERRORS + 1 and errors[-1]["type"] == "too_many_errors"
    assert all(len(e["msg"]) <= 300 for e in errors)


class Trip(BaseModel):
    city: str
    days: int = Field(ge=1)

    @field_validator("city")
    @classmethod
    def _capitalised(cls, v: str) -> str:
        if not v[:1].isupper():
            raise ValueError("city must be capitalised")
        return v


def test_a_pydantic_validator_runs_and_both_must_accept() -> None:
    shape = OutputSchema(Trip.model_json_schema(), Trip.model_validate)
    assert shape.parse('{"city": "Lisbon", "days": 2}').value == Trip(city="Lisbon", days=2)
    with pytest.raises(ObjectParseError) as caught:
        shape.parse('{"city": "lisbon", "days": 2}')
    assert "capitalised" in caught.value.errors[0]["msg"]
    # pydantic (lax) would take "2" for 2; the schema the model was given says integer
    with pytest.raises(ObjectParseError) as caught:
        shape.parse('{"city": "Lisbon", "days": "2"}')
    assert caught.value.errors[0]["loc"] == ["days"]


def test_an_invalid_schema_is_invalid_input() -> None:
    with pytest.raises(ValidationFailed) as caught:
        check_output_schema({"type": "nope"})
    assert caught.value.code == "invalid_input"
    assert caught.value.details["errors"][0]["loc"][0] == "output_schema"
    check_output_schema(TRIP)


def test_an_unresolvable_ref_is_the_schemas_fault_not_the_models() -> None:
    shape = OutputSchema({"type": "object", "properties": {
        "a": {"$ref": "https://example.invalid/remote.json"}}})
    with pytest.raises(ValidationFailed) as caught:
        shape.parse('{"a": 1}')
    assert caught.value.code == "invalid_input"

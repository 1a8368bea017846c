"""Checking a model's structured output: the JSON in its text, against a JSON schema.

``json_body`` takes the JSON out of a model's answer: the text itself, or the body of a
Markdown code fence (```json ... ``` or ``` ... ```) when the text is not JSON on its
own (models often fence their JSON, even when asked not to).

``OutputSchema`` is a JSON schema (any draft ``jsonschema`` knows; 2020-12 when it names
none), compiled once per distinct schema, plus an optional Python validator (a pydantic
model's ``model_validate``). ``parse`` returns the value and the JSON text it came from,
or raises ``ObjectParseError`` listing the problems as ``{"loc", "msg", "type"}`` (the
shape of ``events.errors.pydantic_error_details``): ``json_invalid`` when there is no
JSON; else the validator's errors when it refuses the value; else the schema's (``loc``
is the path in the object; a missing required property is ``type: "missing"`` at the
property's path). A value is accepted only if both accept it.

Guarantees: the same text is accepted or refused the same way on every path (a ``Client``
sending a JSON schema, ``Runtime.generate_text(output_model=...)``, which sends the
model's JSON schema and also validates with pydantic). Error lists are bounded
(``MAX_ERRORS`` entries, messages cut at ``MAX_MESSAGE_CHARS``), so they fit a reply.

Failure modes: ``check_output_schema`` raises ``ValidationFailed`` (``invalid_input``)
for a schema that is not a valid JSON schema, or whose ``$ref`` cannot be resolved
locally (no schema is ever fetched over the network: found when ``parse`` meets the
``$ref``, also ``invalid_input``); otherwise ``parse`` raises only ``ObjectParseError``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pydantic

from events.errors import ValidationFailed, pydantic_error_details

MAX_ERRORS = 50
"""Validation errors kept per answer (the rest are counted in a last entry)."""
MAX_MESSAGE_CHARS = 300
"""Longest error message kept (messages quote the offending value)."""

_FENCE = re.compile(r"```[ \t]*(?:json5?|JSON)?[ \t]*\r?\n?(.*?)\r?\n?[ \t]*```", re.DOTALL)


class ObjectParseError(ValueError):
    """Model output that is not valid for the schema; ``errors`` is JSON-safe."""

    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.errors = errors


def json_body(text: str) -> str:
    """``text`` stripped, or the body of its first code fence when ``text`` is not JSON
    by itself but holds a fence (see the module)."""
    stripped = text.strip()
    if not stripped.startswith("```") and _is_json(stripped):
        return stripped
    fenced = _FENCE.search(stripped)
    return fenced.group(1).strip() if fenced else stripped


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _bounded(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = [{**e, "msg": str(e["msg"])[:MAX_MESSAGE_CHARS]} for e in errors[:MAX_ERRORS]]
    if len(errors) > MAX_ERRORS:
        out.append({"loc": [], "msg": f"{len(errors) - MAX_ERRORS} more errors",
                    "type": "too_many_errors"})
    return out


@functools.lru_cache(maxsize=256)
def _compiled(schema_json: str) -> Any:
    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ValidationFailed(
            f"output_schema is not a valid JSON schema: {exc.message}",
            details={"errors": [{"loc": ["output_schema", *map(str, exc.absolute_path)],
                                 "msg": exc.message[:MAX_MESSAGE_CHARS],
                                 "type": "schema_invalid"}]}) from None
    return cls(schema)


def _schema_key(schema: Mapping[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"), default=str)


def check_output_schema(schema: Mapping[str, Any]) -> None:
    """Raise ``ValidationFailed`` (``invalid_input``) unless ``schema`` is a valid JSON
    schema for its draft."""
    OutputSchema(schema).check()


def _schema_errors(validator: Any, value: Any) -> list[dict[str, Any]]:
    errors = []
    for err in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.path))):
        loc = [str(p) for p in err.absolute_path]
        kind = str(err.validator)
        if kind == "required" and isinstance(err.instance, dict):
            missing = [p for p in err.validator_value or ()
                       if p not in err.instance and f"{p!r} is a required" in err.message]
            if missing:
                loc, kind = [*loc, str(missing[0])], "missing"
        errors.append({"loc": loc, "msg": err.message, "type": kind})
    return errors


@dataclass(frozen=True)
class ParsedObject:
    value: Any
    """The validated value (what ``validate`` returned, when there is one)."""
    body: str
    """The JSON text it was read from (``json_body`` of the answer)."""


class OutputSchema:
    """A JSON schema (and optional validator) that model output must satisfy."""

    def __init__(self, schema: Mapping[str, Any],
                 validate: Callable[[Any], Any] | None = None) -> None:
        self.schema = schema
        self.validate = validate
        self.name = str(schema.get("title") or "output")

    def check(self) -> Any:
        """The compiled validator; ``ValidationFailed`` for an invalid schema."""
        return _compiled(_schema_key(self.schema))

    def parse(self, text: str) -> ParsedObject:
        """The value in ``text`` (see the module), or ``ObjectParseError``."""
        body = json_body(text)
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            raise ObjectParseError(f"output is not valid JSON: {exc}",
                                   [{"loc": [], "msg": f"invalid JSON: {exc}",
                                     "type": "json_invalid"}]) from None
        validator = self.check()
        value = data
        if self.validate is not None:
            try:
                value = self.validate(data)
            except Exception as exc:  # pydantic.ValidationError, or the validator's own
                errors = (pydantic_error_details(exc)["errors"]
                          if isinstance(exc, pydantic.ValidationError)
                          else [{"loc": [], "msg": str(exc), "type": "value_error"}])
                raise ObjectParseError(f"output does not match {self.name}",
                                       _bounded(errors)) from None
        try:
            errors = _schema_errors(validator, data)
        except Exception as exc:  # referencing.exceptions.Unresolvable: the schema's fault
            raise ValidationFailed(
                f"output_schema cannot be used: {exc}"[:MAX_MESSAGE_CHARS],
                details={"errors": [{"loc": ["output_schema"],
                                     "msg": str(exc)[:MAX_MESSAGE_CHARS],
                                     "type": "schema_invalid"}]}) from None
        if errors:
            raise ObjectParseError(f"output does not match {self.name}", _bounded(errors))
        return ParsedObject(value, body)

"""Deterministic example values for a JSON schema (the scripted model's structured output).

``example_for_schema`` returns a value valid for the common JSON-schema subset that pydantic
emits: objects (all properties, required or not), arrays (``minItems`` items, at least one),
strings (``enum``/``const``/``default``/``examples``, formats ``date-time``, ``date``,
``email``, ``uri``/``url``, ``uuid``; ``minLength`` padding), integers and numbers (within
``minimum``/``maximum``/exclusive bounds), booleans, null, ``$ref`` into ``$defs``,
``anyOf``/``oneOf`` (first non-null branch) and ``allOf`` (first branch). Unknown shapes give
``None``. The same schema always gives the same value.
"""

from __future__ import annotations

from typing import Any

_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "email": "user@example.com",
    "uri": "https://example.com",
    "url": "https://example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def example_for_schema(schema: dict[str, Any], *, name: str = "value") -> Any:
    """A deterministic value valid for ``schema`` (see the module docstring)."""
    return _example(schema, schema.get("$defs", {}) or schema.get("definitions", {}), name, 0)


def _example(schema: dict[str, Any], defs: dict[str, Any], name: str, depth: int) -> Any:
    if depth > 12:
        return None
    if "$ref" in schema:
        target = defs.get(str(schema["$ref"]).rsplit("/", 1)[-1], {})
        return _example(target, defs, name, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    if schema.get("examples"):
        return schema["examples"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            branches = [b for b in schema[key] if b.get("type") != "null"] or schema[key]
            return _example(branches[0], defs, name, depth + 1)
    if schema.get("allOf"):
        return _example(schema["allOf"][0], defs, name, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        props: dict[str, Any] = schema.get("properties", {})
        return {key: _example(sub, defs, key, depth + 1) for key, sub in props.items()}
    if kind == "array":
        item_schema = schema.get("items", {})
        count = max(1, int(schema.get("minItems", 1)))
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        return [_example(item_schema, defs, name, depth + 1) for _ in range(count)]
    if kind == "string":
        return _string(schema, name)
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "boolean":
        return True
    return None


def _string(schema: dict[str, Any], name: str) -> str:
    text = _FORMATS.get(str(schema.get("format", "")), f"example {name}")
    min_len = int(schema.get("minLength", 0))
    if len(text) < min_len:
        text = text + "x" * (min_len - len(text))
    if "maxLength" in schema:
        text = text[: int(schema["maxLength"])]
    return text


def _number(schema: dict[str, Any], *, integer: bool) -> int | float:
    low = schema.get("minimum")
    if low is None and "exclusiveMinimum" in schema:
        low = schema["exclusiveMinimum"] + (1 if integer else 0.5)
    high = schema.get("maximum")
    if high is None and "exclusiveMaximum" in schema:
        high = schema["exclusiveMaximum"] - (1 if integer else 0.5)
    value: float = 1
    if low is not None and value < low:
        value = low
    if high is not None and value > high:
        value = high
    return int(value) if integer else float(value)

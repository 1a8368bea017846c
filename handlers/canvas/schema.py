"""The canvas document schema, which apps extend, and the size limits.

A document is ``{"elements": {<element id>: {"type": ..., <properties>}}}``. Element ids
are safe tokens (``A-Z a-z 0-9 _ -``), so a JSON Pointer ``/elements/<id>/...`` needs no
escaping and an id names the same element in patches, filters and snippets.

Extending: subclass :class:`CanvasElement` (add fields, tighten ``extra``) and
:class:`CanvasDocument` (``elements: dict[str, MyElement]``, top-level fields), then pass
``CanvasSchema(document_model=MyDocument)`` to ``register_canvas_commands``.

Validation cost: an edit validates only the elements it touched
(``element_model.model_validate``), O(touched), not O(document); an op on anything but an
element (``/elements`` itself, a top-level field) validates the whole document. Apps whose
document model has cross-element validators set ``validate_whole_document=True``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from events.errors import PayloadTooLarge, pydantic_error_details
from events.ids import check_token
from handlers.canvas.errors import SchemaViolation


class CanvasElement(BaseModel):
    """One element: its ``type`` and geometry, text and style. ``data`` is the app's
    free-form bag; unknown top-level properties are refused (subclass to add fields)."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=64)
    x: float = 0.0
    y: float = 0.0
    width: float | None = Field(None, ge=0)
    height: float | None = Field(None, ge=0)
    rotation: float = 0.0
    z: int = 0
    text: str | None = Field(None, max_length=100_000)
    style: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)


class CanvasDocument(BaseModel):
    """The whole canvas: elements keyed by id."""

    model_config = ConfigDict(extra="forbid")

    elements: dict[str, CanvasElement] = Field(default_factory=dict)

    @field_validator("elements")
    @classmethod
    def _safe_ids(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            check_token(key, what="element id")
        return v


@dataclass(frozen=True)
class CanvasSchema:
    """How documents are validated and how large they and their patches may be."""

    document_model: type[CanvasDocument] = CanvasDocument
    max_document_bytes: int = 1_000_000
    max_patch_ops: int = 500
    max_patch_bytes: int = 256_000
    max_elements: int = 10_000
    validate_whole_document: bool = False

    @property
    def element_model(self) -> type[BaseModel]:
        annotation = self.document_model.model_fields["elements"].annotation
        args: tuple[Any, ...] = getattr(annotation, "__args__", ())
        model = args[-1] if len(args) == 2 else CanvasElement
        return model if isinstance(model, type) and issubclass(model, BaseModel) \
            else CanvasElement

    def validate_document(self, document: dict[str, Any]) -> None:
        """Raise :class:`SchemaViolation` (``schema_violation``) naming the bad fields."""
        try:
            self.document_model.model_validate(document)
        except ValidationError as exc:
            raise _violation(exc, ()) from None
        if len(document.get("elements", {})) > self.max_elements:
            raise PayloadTooLarge(f"a canvas holds at most {self.max_elements} elements",
                                  details={"limit": self.max_elements})

    def validate_element(self, element_id: str, element: Any) -> None:
        """Validate one element (after an edit touched it)."""
        check_token(element_id, what="element id")
        try:
            self.element_model.model_validate(element)
        except ValidationError as exc:
            raise _violation(exc, ("elements", element_id)) from None


def _violation(exc: ValidationError, prefix: tuple[str, ...]) -> SchemaViolation:
    details = pydantic_error_details(exc)
    for err in details["errors"]:
        err["loc"] = [*prefix, *err["loc"]]
    fields = ", ".join("/".join(e["loc"]) for e in details["errors"])
    return SchemaViolation(f"the document breaks the canvas schema at: {fields}",
                           details=details)


def element_size(element: Any) -> int:
    """Bytes of an element's JSON (the unit of the document size limit)."""
    return len(json.dumps(element, separators=(",", ":"), default=str))

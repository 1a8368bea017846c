"""The event catalogue: every event type the system records, registered by its ``type``.

Adding an event type is one model and one line: subclass :class:`Event`, give it a
``type: Literal["..."]`` field, and decorate it with ``@register``. Old payload
versions are read through upcasters registered with :func:`upcaster`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from events.errors import UnknownEventType, ValidationFailed, pydantic_error_details

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class Event(BaseModel):
    """Base of every event payload. Immutable; unknown fields are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    schema_version: ClassVar[int] = 1
    aggregate_type: ClassVar[str] = "thread"
    carries_content: ClassVar[bool] = True
    """Whether the payload holds user content (purged on deletion) or only billing facts."""


E = TypeVar("E", bound=type[Event])


class Catalogue:
    """Maps ``type`` to its model and chains upcasters from old versions to the current one."""

    def __init__(self) -> None:
        self._models: dict[str, type[Event]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, model: E) -> E:
        name = model.__pydantic_fields__["type"].default
        if not isinstance(name, str) or not name:
            raise TypeError(f"{model.__name__} needs a `type: Literal[...]` field with a default")
        existing = self._models.get(name)
        if existing is not None and existing is not model:
            raise TypeError(f"event type {name!r} registered twice ({existing.__name__})")
        self._models[name] = model
        return model

    def upcaster(self, type_: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register ``fn`` turning a ``from_version`` payload into ``from_version + 1``."""

        def deco(fn: Upcaster) -> Upcaster:
            self._upcasters[(type_, from_version)] = fn
            return fn

        return deco

    def model(self, type_: str) -> type[Event]:
        try:
            return self._models[type_]
        except KeyError:
            raise UnknownEventType(
                f"unknown event type {type_!r}", details={"type": type_}
            ) from None

    def types(self) -> list[str]:
        return sorted(self._models)

    def decode(self, type_: str, version: int, data: dict[str, Any]) -> Event:
        """Validate ``data`` as ``type_`` at ``version``, upcasting old versions first.

        Raises :class:`UnknownEventType` for an unknown type or a version with no upcaster
        path, and :class:`ValidationFailed` naming the type and fields for a bad payload.
        """
        model = self.model(type_)
        if version > model.schema_version:
            raise UnknownEventType(
                f"event {type_!r} version {version} is newer than this code "
                f"(knows {model.schema_version})",
                details={"type": type_, "version": version},
            )
        while version < model.schema_version:
            step = self._upcasters.get((type_, version))
            if step is None:
                raise UnknownEventType(
                    f"no upcaster for event {type_!r} from version {version}",
                    details={"type": type_, "version": version},
                )
            data = step(dict(data))
            version += 1
        try:
            return model.model_validate({**data, "type": type_})
        except ValidationError as exc:
            details = pydantic_error_details(exc)
            fields = ", ".join(".".join(e["loc"]) for e in details["errors"])
            raise ValidationFailed(
                f"invalid payload for event {type_!r}: {fields}",
                details={"type": type_, **details},
            ) from None


CATALOGUE = Catalogue()
register = CATALOGUE.register
upcaster = CATALOGUE.upcaster

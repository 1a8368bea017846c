"""The event catalogue: decoding, clear errors, upcasting, and safe ids."""

from __future__ import annotations

from typing import ClassVar, Literal

import pytest

from events import (
    CATALOGUE,
    Aggregate,
    Catalogue,
    Event,
    EventEnvelope,
    InvalidId,
    MessageSaved,
    TextPart,
    UnknownEventType,
    ValidationFailed,
)


def test_every_registered_type_round_trips_through_the_envelope() -> None:
    ev = MessageSaved(message_id="m", thread_id="t", order=3, role="user",
                      content=[TextPart(text="hi")])
    env = EventEnvelope.wrap(ev, Aggregate.thread("t"), causation_id="c1")
    back = EventEnvelope.from_bytes(env.to_bytes())
    assert back.decode() == ev
    assert back.correlation_id == "c1" and back.occurred_at.tzinfo is not None
    assert "message_saved" in CATALOGUE.types()


def test_unknown_type_is_a_clear_error() -> None:
    with pytest.raises(UnknownEventType, match="no_such_event"):
        CATALOGUE.decode("no_such_event", 1, {})


def test_invalid_payload_names_the_type_and_field() -> None:
    with pytest.raises(ValidationFailed) as ei:
        CATALOGUE.decode("message_saved", 1, {"message_id": "m", "thread_id": "t",
                                              "order": -1, "role": "user", "content": []})
    assert "message_saved" in ei.value.message and "order" in ei.value.message
    assert ei.value.details["type"] == "message_saved"


def test_old_versions_are_upcast() -> None:
    cat = Catalogue()

    @cat.register
    class Renamed(Event):
        type: Literal["renamed"] = "renamed"
        schema_version: ClassVar[int] = 2
        name: str

    @cat.upcaster("renamed", 1)
    def v1_to_v2(data: dict) -> dict:  # type: ignore[type-arg]
        return {"name": data.pop("title")}

    assert cat.decode("renamed", 1, {"title": "x"}) == Renamed(name="x")
    with pytest.raises(UnknownEventType, match="newer"):
        cat.decode("renamed", 3, {"name": "x"})


def test_registering_two_models_for_one_type_is_refused() -> None:
    cat = Catalogue()

    class A(Event):
        type: Literal["a"] = "a"

    class B(Event):
        type: Literal["a"] = "a"

    cat.register(A)
    with pytest.raises(TypeError):
        cat.register(B)


@pytest.mark.parametrize("bad", ["a.b", "a*", "a>", "a b", "", "x" * 129, "ä"])
def test_unsafe_subject_tokens_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidId):
        Aggregate.thread(bad)

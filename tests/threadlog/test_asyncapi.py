"""The committed AsyncAPI document matches the subscribers the code registers."""

from __future__ import annotations

import json
from pathlib import Path

from threadlog.asyncapi import asyncapi_json

DOC = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


def test_committed_asyncapi_document_is_in_sync_with_the_app() -> None:
    generated = json.loads(asyncapi_json())
    assert DOC.exists(), "run: threadlog asyncapi --out docs/asyncapi.json"
    committed = json.loads(DOC.read_text())
    assert committed == generated, "docs/asyncapi.json is stale: threadlog asyncapi --out ..."


def test_every_command_subject_is_documented() -> None:
    from handlers import subjects

    channels = {c["address"] for c in json.loads(asyncapi_json())["channels"].values()}
    assert set(subjects.ALL) - {subjects.DELETE_USER_DATA} <= channels

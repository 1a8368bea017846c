"""Secrets never reach raw_response_handler."""

from __future__ import annotations

import copy

from handlers.llm import redact
from handlers.llm.redaction import REDACTED, is_secret_key


def test_credential_keys_are_redacted_at_any_depth_and_token_counts_kept() -> None:
    data = {
        "api_key": "sk-abc", "model": "gpt",
        "extra_headers": {"Authorization": "Bearer x", "X-Api-Key": "k", "x-goog-api-key": "g",
                          "Content-Type": "application/json"},
        "aws_secret_access_key": "s", "client_secret": "c", "password": "p",
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        "max_tokens": 100,
        "list": [{"access_token": "t"}, {"Cookie": "session=1"}],
    }
    original = copy.deepcopy(data)
    out = redact(data)
    assert data == original  # not mutated
    assert out["api_key"] == REDACTED and out["model"] == "gpt"
    assert out["extra_headers"] == {"Authorization": REDACTED, "X-Api-Key": REDACTED,
                                    "x-goog-api-key": REDACTED,
                                    "Content-Type": "application/json"}
    assert out["aws_secret_access_key"] == out["client_secret"] == out["password"] == REDACTED
    assert out["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert out["max_tokens"] == 100
    assert out["list"] == [{"access_token": REDACTED}, {"Cookie": REDACTED}]


def test_secrets_inside_strings_are_redacted() -> None:
    out = redact({
        "note": "used Bearer abc.def-ghi and sk-proj-ABCDEFGHIJKLMNOP today",
        "url": "https://generativelanguage.googleapis.com/v1/models?key=AIzaSECRET&alt=sse",
        "gemini": "AIzaSyA1234567890abcdefghijklmnop",
    })
    assert out["note"] == f"used Bearer {REDACTED} and {REDACTED} today"
    assert out["url"].endswith(f"?key={REDACTED}&alt=sse")
    assert out["gemini"] == REDACTED


def test_which_keys_count_as_secrets() -> None:
    for key in ("api_key", "apiKey", "API-KEY", "authorization", "Proxy-Authorization",
                "token", "refresh_token", "secret", "credentials"):
        assert is_secret_key(key), key
    for key in ("prompt_tokens", "max_tokens", "tokenizer", "model", "author", "key_id"):
        assert not is_secret_key(key), key

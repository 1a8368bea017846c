"""Errors of the model-and-tools layer, as refinements of the threadlog hierarchy::

    ThreadlogError
    ├── ProviderError                   provider_error      (5xx, connection; after retries)
    │   ├── RateLimited                 rate_limited        (429 after retries)
    │   ├── ProviderTimeout             provider_timeout    (our timeout or the provider's)
    │   └── ProviderRejected            provider_rejected   (other 4xx: never retried)
    │       └── PromptTooLarge          prompt_too_large    (context window exceeded)
    └── ValidationFailed                invalid_input
        └── InvalidModelOutput          invalid_model_output (structured output after repair)

``details`` always holds JSON-safe data: the ``model`` and ``provider`` of the last attempt,
the HTTP ``status_code`` when there was one, the number of ``attempts`` and the ``call_id``.
"""

from __future__ import annotations

from typing import Any

from events.errors import ThreadlogError, ValidationFailed


class ProviderError(ThreadlogError):
    """The model provider failed (5xx, connection error) and retries are exhausted."""

    code = "provider_error"
    retryable: bool = True


class RateLimited(ProviderError):
    """The provider kept answering 429 until retries were exhausted."""

    code = "rate_limited"


class ProviderTimeout(ProviderError):
    """No answer (or no next stream chunk) within the call's ``timeout``."""

    code = "provider_timeout"


class ProviderRejected(ProviderError):
    """The provider refused the request (4xx other than 429): bad key, bad parameter...

    Never retried: the same request would be refused again."""

    code = "provider_rejected"
    retryable = False


class PromptTooLarge(ProviderRejected):
    """The prompt does not fit the model's context window."""

    code = "prompt_too_large"


class InvalidModelOutput(ValidationFailed):
    """Structured output did not validate, even after the repair attempt.

    ``details['errors']`` lists the validation errors of the last attempt and
    ``details['output']`` holds (a prefix of) the model's last raw output.
    ``results`` holds the ``ModelResult`` of every call made, so usage can be recorded."""

    code = "invalid_model_output"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None,
                 results: tuple[Any, ...] = ()) -> None:
        super().__init__(message, details=details)
        self.results = results

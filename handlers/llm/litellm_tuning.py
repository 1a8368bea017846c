"""Skip litellm's per-call bookkeeping that nothing reads when no litellm callback is set.

Every model call still goes through ``litellm.acompletion``. After the provider answers,
litellm's ``@client`` wrapper does two things threadlog has no use for unless the user
configured litellm callbacks:

- ``litellm.utils.update_response_metadata``: fills ``response._hidden_params``
  (``response_cost`` priced again from litellm's cost map, api base, call id, processed
  headers) and the timing fields (``response_time_ms``...);
- ``litellm.utils.dispatch_success_logging``: schedules the async success handler (it
  copies the messages, builds the standard logging payload, prices the call again and
  runs the async success callbacks) and submits the sync success callbacks to a thread.

With the scripted model they cost ~1.7 ms of CPU per call, half of the call. threadlog
computes usage and cost itself from the response's ``usage`` (``usage_and_cost``), so its
usage events are the same with or without them.

What is skipped: both functions, for one call, only when all of these hold at the call:

- the call is a non-streamed ``call_model`` attempt made inside :func:`lean_call`, whose
  request carries no per-call callback (``callbacks``, ``success_callback``,
  ``failure_callback``, ``logger_fn``...) and whose agent has no ``raw_response_handler``
  (it reads the processed headers from ``_hidden_params``);
- no litellm callback of any kind is configured: ``litellm.callbacks``,
  ``success_callback``, ``_async_success_callback``, ``input_callback``,
  ``_async_input_callback``, ``failure_callback``, ``_async_failure_callback``,
  ``service_callback``, ``audit_log_callbacks`` and ``batch_line_item_callbacks`` are all
  empty;
- ``litellm.max_budget`` is unset (the success handler keeps litellm's running cost) and
  ``LITELLM_PRINT_STANDARD_LOGGING_PAYLOAD`` is unset (the handler prints the payload).

Why it is safe: with no callback, the success handler's only outputs are the payload it
hands to callbacks and fields on the response and logging object that threadlog never
reads; failure logging, caching, retries, guardrail hooks and the provider call are
untouched. Anything else in the process calling litellm (outside ``lean_call``), or any
call once a callback is configured (even after startup), gets litellm's full behaviour.

Checked against litellm 1.110.2 (pyproject pins ``<1.111``). Older releases (1.83) have
no ``dispatch_success_logging``: if either name is missing or its parameters are not the
expected ones, :func:`install` patches nothing and logs one warning.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import inspect
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

log = logging.getLogger(__name__)

_LEAN: ContextVar[bool] = ContextVar("threadlog_litellm_lean", default=False)
CALLBACK_SETTINGS = ("callbacks", "success_callback", "_async_success_callback",
                     "input_callback", "_async_input_callback", "failure_callback",
                     "_async_failure_callback", "service_callback", "audit_log_callbacks",
                     "batch_line_item_callbacks")
"""litellm module attributes that hold configured callbacks."""
PATCHED = {
    "update_response_metadata": ("result", "logging_obj", "model", "kwargs", "start_time",
                                 "end_time"),
    "dispatch_success_logging": ("logging_obj", "result", "start_time", "end_time",
                                 "is_completion_with_fallbacks", "is_litellm_internal_call"),
}
"""The private ``litellm.utils`` functions skipped, with the parameters they must take."""
_MARK = "__threadlog_lean__"
_installed: bool | None = None


def callbacks_configured(litellm: Any) -> bool:
    """Whether litellm would do anything with a success log (see the module docstring)."""
    return (any(getattr(litellm, name, None) for name in CALLBACK_SETTINGS)
            or bool(getattr(litellm, "max_budget", 0))
            or bool(os.getenv("LITELLM_PRINT_STANDARD_LOGGING_PAYLOAD")))


def request_has_callbacks(request: Mapping[str, Any]) -> bool:
    """Per-call callbacks in ``litellm.acompletion`` keyword arguments."""
    return any(key.endswith(("callback", "callbacks")) or key == "logger_fn"
               for key in request)


@contextlib.contextmanager
def lean_call(request: Mapping[str, Any], *, wants_metadata: bool = False) -> Iterator[None]:
    """Around one ``litellm.acompletion``: let the patched functions skip their work for
    it (unless the request has callbacks or ``wants_metadata``)."""
    if wants_metadata or request_has_callbacks(request):
        yield
        return
    token = _LEAN.set(True)
    try:
        yield
    finally:
        _LEAN.reset(token)


def _skippable(litellm: Any, original: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _LEAN.get() and not callbacks_configured(litellm):
            return None
        return original(*args, **kwargs)

    setattr(wrapper, _MARK, True)
    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    wrapper.__name__ = original.__name__
    return wrapper


def _version() -> str:
    try:
        return importlib.metadata.version("litellm")
    except importlib.metadata.PackageNotFoundError:
        return "?"


def install(litellm: Any) -> bool:
    """Patch ``litellm.utils`` once (see the module docstring); ``False`` (and one logged
    warning) when litellm's private names are not as checked."""
    global _installed
    if _installed is not None:
        return _installed
    utils = getattr(litellm, "utils", None)
    found = {name: getattr(utils, name, None) for name in PATCHED}
    for name, params in PATCHED.items():
        fn = found[name]
        try:
            ok = callable(fn) and set(params) <= set(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            log.warning("litellm %s has no usable litellm.utils.%s: its success logging and "
                        "response metadata stay on for every call", _version(), name)
            _installed = False
            return False
    for name, fn in found.items():
        if callable(fn) and not getattr(fn, _MARK, False):
            setattr(utils, name, _skippable(litellm, fn))
    _installed = True
    return True

"""Load a :class:`threadlog.App` from an import string ``pkg.module:attribute`` (as
uvicorn loads ``main:app``).

``attribute`` may be dotted (``module:holder.app``); when it names a callable that is
not an ``App``, it is called with no arguments (an app factory) and must return one.

Guarantees: the result is an ``App``. Failure modes: :class:`AppLoadError` (code
``invalid_app``) with a one-line message for a string without ``:``, a module that
cannot be imported (the import error's own message), a missing attribute, or an object
that is not an ``App``.
"""

from __future__ import annotations

import importlib
from typing import Any

from events.errors import ValidationFailed
from threadlog.app import App


class AppLoadError(ValidationFailed):
    code = "invalid_app"


def load_app(spec: str) -> App:
    """The ``App`` named by ``spec`` (see the module docstring)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise AppLoadError(f"--app {spec!r}: expected 'package.module:attribute'",
                           details={"app": spec})
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise AppLoadError(f"--app {spec!r}: cannot import {module_name!r}: "
                           f"{type(exc).__name__}: {exc}", details={"app": spec}) from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(f"--app {spec!r}: module {module_name!r} has no attribute "
                               f"{attr!r}", details={"app": spec}) from None
    if not isinstance(obj, App) and callable(obj):
        obj = obj()
    if not isinstance(obj, App):
        raise AppLoadError(f"--app {spec!r} is a {type(obj).__name__}, not a threadlog.App",
                           details={"app": spec})
    return obj

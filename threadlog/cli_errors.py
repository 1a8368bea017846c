"""The CLI's error boundary: a user error is one line saying what to do, not a traceback.

:func:`run_cli` runs the typer app; an exception that reaches it becomes one line on
stderr and exit status 2 when it is a user error (a :class:`ThreadlogError` — bad period,
refused credential, unreachable server, a held lock — or a DuckDB file already held by
another process), or ``internal error: ...`` with exit status 1 otherwise. ``--debug``
(or ``THREADLOG_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from events import ThreadlogError

DEBUG_FLAG = "--debug"


def one_line(exc: BaseException) -> tuple[str, int]:
    """The line to print for ``exc`` and the exit status."""
    if isinstance(exc, ThreadlogError):
        return f"error ({exc.code}): {exc.message}", 2
    text = str(exc)
    if type(exc).__module__.lstrip("_").startswith("duckdb") and "lock" in text.lower():
        return ("error: the DuckDB file is in use by another process (a running "
                "`threadlog serve`?): stop it or use another --data-dir", 2)
    if "Address already in use" in text or "address already in use" in text:
        return f"error: {text}: another process listens there (another `serve`?)", 2
    return f"internal error: {type(exc).__name__}: {text} (run with --debug for details)", 1


def run_cli(app: Callable[..., Any], argv: list[str] | None = None) -> None:
    """Run ``app`` with the error boundary (see the module docstring)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args or os.environ.get("THREADLOG_DEBUG") == "1"
    args = [a for a in args if a != DEBUG_FLAG]
    try:
        app(args=args, standalone_mode=True)
    except SystemExit:
        raise
    except BaseException as exc:  # the boundary: everything a command let through
        if debug or isinstance(exc, KeyboardInterrupt):
            raise
        line, status = one_line(exc)
        print(line, file=sys.stderr)
        raise SystemExit(status) from None

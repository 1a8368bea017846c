"""The projector's health: what it is doing, how far behind it is, and why it is stuck.

:meth:`projections.projector.Projector.health` returns a :class:`ProjectorHealth`; the
operator status reply (``query.status``) and ``threadlog health`` show
:meth:`ProjectorHealth.to_dict`.

States
- ``starting``: opening the file / checking the stream, nothing applied yet in this run.
- ``running``: applying the log (caught up or catching up; see ``lag``).
- ``retrying``: a write or I/O error (disk full, a read-only file...) stopped it; it is
  retried with backoff and resumes by itself once the cause is gone. ``last_error`` holds
  the original error text, ``since`` when it started failing.
- ``rebuilding``: the stream no longer matches the checkpoint (a lost tail, a recreated
  stream, purged events); the views are being rebuilt from the log.
- ``unavailable``: the file cannot be opened (read-only, locked, permissions); queries
  answer ``unavailable`` with ``last_error``; command handlers are not affected. It keeps
  trying to open the file with backoff.
- ``stopped``: ``run`` returned (shutdown) or was never started.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, Literal

State = Literal["starting", "running", "retrying", "rebuilding", "unavailable", "stopped"]
STATES: tuple[State, ...] = ("starting", "running", "retrying", "rebuilding", "unavailable",
                             "stopped")
HEALTHY: frozenset[State] = frozenset({"starting", "running", "rebuilding"})
"""States in which the projector makes progress by itself (``retrying`` may too, but is
reported as unhealthy until the cause is gone)."""


@dataclass(frozen=True)
class ProjectorHealth:
    state: State
    checkpoint: int
    """Last stream sequence applied to every view."""
    stream_last_seq: int | None
    """The stream's last sequence as last seen (None when not known)."""
    lag: int | None
    """``stream_last_seq - checkpoint`` (never negative), None when not known."""
    last_error: str | None
    """The original error text, e.g. ``"IOException: No space left on device"``."""
    since: datetime | None
    """When the current state began (UTC)."""

    @property
    def healthy(self) -> bool:
        return self.state in HEALTHY

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``since`` as ISO 8601, plus ``healthy``."""
        return {"state": self.state, "checkpoint": self.checkpoint,
                "stream_last_seq": self.stream_last_seq, "lag": self.lag,
                "last_error": self.last_error,
                "since": None if self.since is None else self.since.isoformat(),
                "healthy": self.healthy}


_PATH = re.compile(r"(?:/[^/\s\"'():,]+)+/?")


def without_paths(text: str) -> str:
    """``text`` with each absolute path cut to its last part (what users see: the
    server's directories stay private, as ``db_path`` in the status)."""
    return _PATH.sub(lambda m: PurePosixPath(m.group(0)).name or "/", text)


def for_users(health: ProjectorHealth) -> ProjectorHealth:
    """``health`` with the file paths cut from ``last_error``."""
    if health.last_error is None:
        return health
    return replace(health, last_error=without_paths(health.last_error))


def error_text(exc: BaseException) -> str:
    """``"TypeName: message"``: the original error, as logged and reported."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

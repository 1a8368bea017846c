"""Canvas subjects (request/reply over core NATS), served by ``register_canvas_commands``."""

from __future__ import annotations

CREATE = "cmd.canvas.create"
EDIT = "cmd.canvas.edit"
REVERT = "cmd.canvas.revert"
GET = "cmd.canvas.get"
HISTORY = "cmd.canvas.history"

ALL = [CREATE, EDIT, REVERT, GET, HISTORY]

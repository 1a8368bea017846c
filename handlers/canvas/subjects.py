"""Canvas subjects (request/reply over core NATS), served by ``register_canvas_commands``;
``{user_id}``: the user the request acts for (see ``handlers.subjects``)."""

from __future__ import annotations

CREATE = "cmd.{user_id}.canvas.create"
EDIT = "cmd.{user_id}.canvas.edit"
REVERT = "cmd.{user_id}.canvas.revert"
GET = "cmd.{user_id}.canvas.get"
HISTORY = "cmd.{user_id}.canvas.history"

ALL = [CREATE, EDIT, REVERT, GET, HISTORY]

"""Command subjects (request/reply over core NATS) served by the handlers app.

Each acts for the user in its second token, ``cmd.<user_id>.<name>``: the NATS server
lets a user-role connection publish only under its own id (``events.identity``), so the
handlers take the user from the subject, never from the payload alone. The constants are
templates with ``{user_id}`` (FastStream's path syntax: subscribers listen on ``*``; the
``Client`` fills in its user).

A command sent while no handler runs fails at once with ``unavailable`` ("no responders"):
commands are not queued. Retrying with the same ``command_id`` is always safe.
"""

from __future__ import annotations

CREATE_THREAD = "cmd.{user_id}.thread.create"
UPDATE_THREAD = "cmd.{user_id}.thread.update"
DELETE_THREAD = "cmd.{user_id}.thread.delete"
DELETE_USER_DATA = "cmd.{user_id}.user.delete"
PENDING_DELETIONS = "cmd.{user_id}.deletion.pending"
SAVE_MESSAGES = "cmd.{user_id}.messages.save"
GENERATE = "cmd.{user_id}.agent.generate"
ABORT = "cmd.{user_id}.agent.abort"
APPROVAL = "cmd.{user_id}.agent.approval"

ABORT_SIGNAL = "sig.agent.abort"
"""``sig.agent.abort.<thread_id>.<message_id>``: core NATS, every handler process listens
(no queue group); only the process running that generation answers. Only the service
role may publish ``sig.>``."""

ALL = [CREATE_THREAD, UPDATE_THREAD, DELETE_THREAD, DELETE_USER_DATA, PENDING_DELETIONS,
       SAVE_MESSAGES, GENERATE, ABORT, APPROVAL]

COMMAND_QUEUE = "threadlog-handlers"
"""The queue group of every command subscriber: with several handler processes, each
command reaches exactly one of them (any may take any command: state is in the log)."""

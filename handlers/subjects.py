"""Command subjects (request/reply over core NATS) served by the handlers app.

A command sent while no handler runs fails at once with ``unavailable`` ("no responders"):
commands are not queued. Retrying with the same ``command_id`` is always safe.
"""

from __future__ import annotations

CREATE_THREAD = "cmd.thread.create"
UPDATE_THREAD = "cmd.thread.update"
DELETE_THREAD = "cmd.thread.delete"
DELETE_USER_DATA = "cmd.user.delete"
PENDING_DELETIONS = "cmd.deletion.pending"
SAVE_MESSAGES = "cmd.messages.save"
GENERATE = "cmd.agent.generate"
ABORT = "cmd.agent.abort"
APPROVAL = "cmd.agent.approval"

ABORT_SIGNAL = "sig.agent.abort"
"""``sig.agent.abort.<thread_id>.<message_id>``: core NATS, every handler process listens
(no queue group); only the process running that generation answers."""

ALL = [CREATE_THREAD, UPDATE_THREAD, DELETE_THREAD, DELETE_USER_DATA, PENDING_DELETIONS,
       SAVE_MESSAGES, GENERATE, ABORT, APPROVAL]

COMMAND_QUEUE = "threadlog-handlers"
"""The queue group of every command subscriber: with several handler processes, each
command reaches exactly one of them (any may take any command: state is in the log)."""

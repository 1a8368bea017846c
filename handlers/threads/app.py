"""Thread command subscribers: create, update, save messages, delete (a thread or all of a
user's), pending deletions. See ``handlers.subjects`` for the subjects."""

from __future__ import annotations

from typing import Any

from faststream.nats import NatsBroker

from handlers import subjects
from handlers.canvas.service import CanvasService
from handlers.runner import CommandRunner
from handlers.subjects import COMMAND_QUEUE
from handlers.threads import decisions as thread_decisions
from handlers.threads.commands import (
    CreateThread,
    DeleteThread,
    DeleteUserData,
    PendingDeletions,
    SaveMessages,
    UpdateThread,
)
from handlers.threads.deletion import ThreadDeleter
from handlers.threads.pending_purges import PendingPurges


def register_thread_commands(broker: NatsBroker, runner: CommandRunner,
                             canvas: CanvasService | None = None,
                             deltas_stream: str = "DELTAS",
                             purges: PendingPurges | None = None) -> ThreadDeleter:
    """Thread commands. Deleting a thread also purges its canvases (when ``canvas``);
    ``purges`` (the pending-purge records) enables asynchronous deletion."""

    @broker.subscriber(subjects.CREATE_THREAD, queue=COMMAND_QUEUE, title=subjects.CREATE_THREAD,
                       description="Create a thread. Result: {thread_id}.")
    async def create_thread(body: CreateThread) -> dict[str, Any]:
        tid = thread_decisions.thread_id_for(body)
        reply = await runner.run(body, tid, thread_decisions.create_thread,
                                 thread_decisions.replay_thread_result)
        return reply.model_dump(mode="json")

    @broker.subscriber(subjects.UPDATE_THREAD, queue=COMMAND_QUEUE, title=subjects.UPDATE_THREAD,
                       description="Update a thread's title, summary, status or metadata.")
    async def update_thread(body: UpdateThread) -> dict[str, Any]:
        reply = await runner.run(body, body.thread_id, thread_decisions.update_thread,
                                 thread_decisions.replay_thread_result)
        return reply.model_dump(mode="json")

    @broker.subscriber(subjects.SAVE_MESSAGES, queue=COMMAND_QUEUE, title=subjects.SAVE_MESSAGES,
                       description="Save messages to a thread. Result: ids, order, step_order.")
    async def save_messages(body: SaveMessages) -> dict[str, Any]:
        reply = await runner.run(body, body.thread_id, thread_decisions.save_messages,
                                 thread_decisions.replay_save_messages)
        return reply.model_dump(mode="json")

    deleter = ThreadDeleter(runner, canvas, deltas_stream, purges)

    @broker.subscriber(subjects.DELETE_THREAD, queue=COMMAND_QUEUE, title=subjects.DELETE_THREAD,
                       description="Delete a thread: its content is purged from the log "
                                   "(a content-free tombstone stays), its canvases and "
                                   "deltas too, and the projections drop its rows. "
                                   "wait=false: reply after the tombstone, purge in the "
                                   "background (resumed after a crash).")
    async def delete_thread(body: DeleteThread) -> dict[str, Any]:
        return (await deleter.delete_thread(body)).model_dump(mode="json")

    @broker.subscriber(subjects.DELETE_USER_DATA, queue=COMMAND_QUEUE,
                       title=subjects.DELETE_USER_DATA,
                       description="Delete every thread (messages, canvases) of the user. "
                                   "Usage and invoices stay; they hold no content. "
                                   "wait=false: reply at once, delete in the background.")
    async def delete_user_data(body: DeleteUserData) -> dict[str, Any]:
        return (await deleter.delete_user_data(body)).model_dump(mode="json")

    @broker.subscriber(subjects.PENDING_DELETIONS, queue=COMMAND_QUEUE,
                       title=subjects.PENDING_DELETIONS,
                       description="Purges still owed by the user's asynchronous deletions "
                                   "(of one thread with thread_id), after waiting up to "
                                   "wait_s for them. Result: {pending, done}.")
    async def pending_deletions(body: PendingDeletions) -> dict[str, Any]:
        return (await deleter.pending(body)).model_dump(mode="json")

    return deleter

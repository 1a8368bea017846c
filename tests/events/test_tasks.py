"""``cancel_and_wait`` stops a loop whose wait drops a cancellation (Python 3.11's
``asyncio.wait_for``, under nats-py's waits, can)."""

from __future__ import annotations

import asyncio

from events.tasks import cancel_and_wait


async def test_a_loop_that_drops_one_cancellation_is_stopped() -> None:
    dropped = asyncio.Event()

    async def loop() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if dropped.is_set():
                    raise
                dropped.set()  # carry on, as a wait_for that completed as it was cancelled

    task = asyncio.ensure_future(loop())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait([task], every=0.05), 5)
    assert dropped.is_set() and task.cancelled()


async def test_finished_and_failed_tasks_are_consumed() -> None:
    async def fail() -> None:
        raise ValueError("boom")

    done = asyncio.ensure_future(asyncio.sleep(0))
    failed = asyncio.ensure_future(fail())
    await asyncio.wait({done, failed})
    await cancel_and_wait([done, failed])
    assert failed.exception() is not None

"""Workpool: durable, globally rate-limited background work on NATS JetStream.

The public surface (everything else is internal)::

    from scheduler.workpool import Workpool, RetryPolicy, NonRetryableError

- :class:`Workpool` - ``function``/``register``, ``enqueue``, ``status``, ``cancel``,
  ``cancel_all``, ``set_max_parallelism``, ``worker``.
- :class:`WorkContext` (a function's first argument), :class:`CompletionContext` (what
  ``on_complete`` receives), :class:`WorkStatus` and :class:`WorkResult`.
- :class:`RetryPolicy`, :class:`NonRetryableError`.

Modules: ``pool`` (public API), ``worker`` (pull loop), ``item`` (one delivery),
``decide`` (the rules, pure), ``status`` (the fold), ``journal`` (event I/O),
``limits`` (stream, consumer, global limit), ``schedule`` (scheduled messages),
``retry``, ``registry``. Item events: ``events.work_events``.
"""

from scheduler.workpool.pool import Workpool
from scheduler.workpool.registry import CompletionContext, WorkContext
from scheduler.workpool.retry import NonRetryableError, RetryPolicy
from scheduler.workpool.status import WorkResult, WorkStatus
from scheduler.workpool.worker import Worker

__all__ = ["CompletionContext", "NonRetryableError", "RetryPolicy", "WorkContext",
           "WorkResult", "WorkStatus", "Worker", "Workpool"]

"""Run delivery: a JetStream work-queue stream holding at most one message per run.

Subject ``<prefix>.<name>.v<version>.<run_id>``; one durable pull consumer per (name,
version) filter, shared by every worker that registered that workflow version (so a
worker only takes runs it can replay). The stream keeps one message per subject and
discards the older one: a *wake* replaces a run's delayed message with one due now.

Guarantees
- A run's message is acked only when the run is finished and its completion recorded;
  until then it is redelivered: after ``ack_wait`` without a heartbeat (a dead worker),
  or at the due time of a durable timer (``nak(delay)``).
- A wake is published only for a run whose last worker event is ``run_suspended``
  (nobody holds it), with ``Nats-Msg-Id`` = ``wake:<run>:<that event's seq>``: two
  senders waking the same suspension publish one message.

Failure modes: a missing stream is created by :meth:`RunQueue.ensure`; one with other
subjects raises :class:`Unavailable`. A start whose message publish failed leaves the
run recorded but undelivered: ``start`` raises and may be called again with the same
``run_id`` (idempotent).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from events.errors import Unavailable


@dataclass(frozen=True)
class WorkflowConfig:
    """Where runs are queued and the engine's limits. Tests shorten ``ack_wait``."""

    stream: str = "WF_RUNS"
    prefix: str = "wf.run"
    ack_wait: float = 10.0
    """Seconds after which an unacknowledged run without heartbeat is redelivered: the
    takeover bound after a worker dies is ``ack_wait`` plus one fetch."""
    idle_recheck: float = 300.0
    """A run waiting for an event without a timeout is looked at again this often."""
    max_result_bytes: int = 1_000_000
    max_steps: int = 10_000
    max_crashes_per_step: int = 10
    """A step whose attempts died with their worker this often fails (poison step)."""
    replicas: int = 1
    agent_timeout: float = 300.0
    """Seconds an agent step (``step.generate_text``...) waits for its command's reply."""

    @property
    def heartbeat(self) -> float:
        return self.ack_wait / 3

    def subject(self, name: str, version: int, run_id: str) -> str:
        return f"{self.prefix}.{name}.v{version}.{run_id}"

    def filter(self, name: str, version: int) -> str:
        return f"{self.prefix}.{name}.v{version}.*"

    def durable(self, name: str, version: int) -> str:
        return f"{self.stream}_{name}_v{version}"


class RunQueue:
    """Publishing and consuming run messages on the ``WorkflowConfig.stream``."""

    def __init__(self, js: JetStreamContext, config: WorkflowConfig) -> None:
        self.js = js
        self.config = config

    async def ensure(self) -> None:
        cfg = self.config
        subjects = [f"{cfg.prefix}.>"]
        try:
            info = await self.js.stream_info(cfg.stream)
        except NotFoundError:
            await self.js.add_stream(StreamConfig(
                name=cfg.stream, subjects=subjects, retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE, max_msgs_per_subject=1, discard=DiscardPolicy.OLD,
                num_replicas=cfg.replicas, duplicate_window=120.0))
            return
        if sorted(info.config.subjects or []) != subjects:
            raise Unavailable(f"stream {cfg.stream!r} has subjects {info.config.subjects}, "
                              f"expected {subjects}", details={"stream": cfg.stream})

    def consumer_config(self, name: str, version: int) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.config.durable(name, version), ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.config.ack_wait, max_deliver=-1, max_ack_pending=10_000,
            filter_subject=self.config.filter(name, version))

    async def publish(self, name: str, version: int, run_id: str, msg_id: str,
                      first_seq: int = 0) -> None:
        """Deliver (or wake) run ``run_id`` now; ``first_seq`` hints where its journal
        starts so a worker reads it without scanning."""
        body = json.dumps({"run_id": run_id, "first_seq": first_seq}).encode()
        await self.js.publish(self.config.subject(name, version, run_id), body,
                              stream=self.config.stream, headers={"Nats-Msg-Id": msg_id})

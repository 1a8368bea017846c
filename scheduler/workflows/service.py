"""Workflow subjects under the trust boundary: users act on their own runs, operators on
any run.

=====================================  ===============================================
``cmd.<u>.workflow.start``             ``{command_id, name, args?, version?, on_complete?,
                                       context?, run_id?}`` -> ``{run_id}``
``cmd.<u>.workflow.cancel``            ``{command_id, run_id, reason?}`` -> ``{run_id, state}``
``cmd.<u>.workflow.restart``           ``{command_id, run_id, from_step?}`` -> ``{run_id}``
``cmd.<u>.workflow.send_event``        ``{command_id, run_id, name, value?}`` -> ``{run_id}``
``query.<u>.workflows.list``           ``{name?, limit?}`` -> ``{items: [run...]}``
``query.<u>.workflows.status``         ``{run_id}`` -> run
``query.<u>.workflows.steps``          ``{run_id}`` -> ``{items: [step...]}``
``ops.workflows.<same names>``         operators: the same on any run (``user_id`` in the
                                       body filters ``list`` and names the starter)
=====================================  ===============================================

Guarantees
- Identity comes from the subject (``validate_request(..., subject=)``): a body naming
  another user is ``forbidden``; the starting user is recorded in ``workflow_started``;
  a run of another user (or of none) is ``forbidden`` on every ``cmd``/``query`` subject.
- ``start`` is idempotent by command id: the run id derives from (user, command id)
  unless given, and starting an existing run starts nothing new. An unknown workflow or
  completion handler is ``unknown_workflow`` (nothing recorded). ``send_event`` derives
  its event id from the command id (a re-sent command is one event); a re-sent
  ``cancel`` of a run already asked to cancel succeeds again.
- Every reply has the one shape (``events.replies``), is bounded by the connection's
  max payload, and goes only to an inbox (``reply_allowed``).

Failure modes: ``not_found`` (unknown run), ``invalid_transition`` (cancel of a finished
run, restart of an unfinished one), ``invalid_input`` / ``invalid_json`` /
``payload_too_large``; the status answers come from the log (``read``), so they cost a
read of the run's events, and ``list`` a walk of all ``workflow_started`` events.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from events.decoding import validate_request
from events.errors import Forbidden
from events.identity import subject_user
from events.ids import SafeId, derived_id
from events.replies import Reply
from events.serving import answer
from scheduler.workflows import read
from scheduler.workflows.api import WorkflowClient
from scheduler.workflows.errors import UnknownWorkflow
from scheduler.workflows.read import RunStatus

log = logging.getLogger(__name__)
STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)
QUEUE = "threadlog-workflows"


class _Body(BaseModel):
    model_config = STRICT
    user_id: SafeId | None = None


class StartBody(_Body):
    command_id: SafeId
    name: SafeId
    args: Any = None
    version: int | None = Field(None, ge=1)
    on_complete: str | None = Field(None, max_length=200)
    context: Any = None
    run_id: SafeId | None = None


class CancelBody(_Body):
    command_id: SafeId
    run_id: SafeId
    reason: str = Field("", max_length=1_000)


class RestartBody(_Body):
    command_id: SafeId
    run_id: SafeId
    from_step: int = Field(1, ge=1)


class SendEventBody(_Body):
    command_id: SafeId
    run_id: SafeId
    name: str = Field(min_length=1, max_length=200)
    value: Any = None


class ListBody(_Body):
    name: SafeId | None = None
    limit: int = Field(100, ge=1, le=1_000)


class RunBody(_Body):
    run_id: SafeId


MODELS: dict[str, type[_Body]] = {
    "start": StartBody, "cancel": CancelBody, "restart": RestartBody,
    "send_event": SendEventBody, "list": ListBody, "status": RunBody, "steps": RunBody}
SUBJECTS = {"cmd": ("start", "cancel", "restart", "send_event"),
            "query": ("list", "status", "steps")}


def run_dict(st: RunStatus) -> dict[str, Any]:
    """A run as replies carry it (JSON)."""
    d = asdict(st)
    for k in ("wake_at", "updated_at"):
        d[k] = d[k].isoformat() if d[k] is not None else None
    return d


class WorkflowService:
    """Serves the subjects above with a :class:`WorkflowClient` (its ``workflows``
    registry decides which names may start)."""

    def __init__(self, client: WorkflowClient, *, max_request_bytes: int = 1_000_000) -> None:
        self.client = client
        self.nc = client.store.nc
        self.max_request_bytes = max_request_bytes
        self._subs: list[Any] = []

    async def start(self) -> WorkflowService:
        for subject in ("cmd.*.workflow.*", "query.*.workflows.*", "ops.workflows.*"):
            self._subs.append(await self.nc.subscribe(subject, queue=QUEUE, cb=self._on_msg))
        await self.nc.flush()
        return self

    async def stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs = []

    async def _on_msg(self, msg: Any) -> None:
        await answer(msg, self.handle, self.nc.max_payload, log)

    async def handle(self, subject: str, data: bytes) -> Reply:
        """The reply to one request on ``subject`` (raises on refusal)."""
        parts = subject.split(".")
        root, op = parts[0], parts[-1]
        if root != "ops" and op not in SUBJECTS.get(root, ()):
            raise UnknownWorkflow(f"no workflow operation {op!r} on {root}.*",
                                  details={"subject": subject})
        model = MODELS.get(op)
        if model is None:
            raise UnknownWorkflow(f"no workflow operation {op!r}", details={"subject": subject})
        body = validate_request(model, data, max_bytes=self.max_request_bytes, subject=subject)
        user = subject_user(subject)  # None on ops.*: operators act on any run
        result = await getattr(self, f"_{op}")(body, user)
        return Reply.success(result)

    async def _own(self, run_id: str, user: str | None) -> RunStatus:
        st = await self.client.status(run_id)
        if user is not None and st.user_id != user:
            raise Forbidden(f"workflow run {run_id!r} belongs to another user",
                            details={"run_id": run_id})
        return st

    async def _start(self, b: StartBody, user: str | None) -> dict[str, Any]:
        wfs = self.client.workflows
        if wfs is None or (b.version is None and wfs.latest(b.name) is None):
            raise UnknownWorkflow(f"no workflow {b.name!r} is defined here",
                                  details={"name": b.name})
        if b.version is not None:
            wfs.get(b.name, b.version)
        if b.on_complete is not None:
            wfs.completion(b.on_complete)
        starter = user or b.user_id
        run_id = b.run_id or derived_id("workflow", starter or "", b.command_id)
        await self.client.start(b.name, b.args, version=b.version, on_complete=b.on_complete,
                                context=b.context, run_id=run_id, user_id=starter)
        st = await self._own(run_id, user)
        return {"run_id": run_id, "state": st.state}

    async def _cancel(self, b: CancelBody, user: str | None) -> dict[str, Any]:
        await self._own(b.run_id, user)
        j = await read.load_journal(self.client.store, b.run_id)
        if j.cancel_requested is None:
            await self.client.cancel(b.run_id, b.reason)
        return {"run_id": b.run_id, "state": (await self.client.status(b.run_id)).state}

    async def _restart(self, b: RestartBody, user: str | None) -> dict[str, Any]:
        await self._own(b.run_id, user)
        await self.client.restart(b.run_id, from_step=b.from_step)
        return {"run_id": b.run_id}

    async def _send_event(self, b: SendEventBody, user: str | None) -> dict[str, Any]:
        await self._own(b.run_id, user)
        await self.client.send_event(b.run_id, b.name, b.value,
                                     event_id=derived_id("wfevent", b.run_id, b.command_id))
        return {"run_id": b.run_id}

    async def _list(self, b: ListBody, user: str | None) -> dict[str, Any]:
        runs = await self.client.list(name=b.name, limit=b.limit, user_id=user or b.user_id)
        return {"items": [run_dict(r) for r in runs]}

    async def _status(self, b: RunBody, user: str | None) -> dict[str, Any]:
        return run_dict(await self._own(b.run_id, user))

    async def _steps(self, b: RunBody, user: str | None) -> dict[str, Any]:
        await self._own(b.run_id, user)
        steps = await self.client.list_steps(b.run_id)
        items = []
        for s in steps:
            d = asdict(s)
            for k in ("started_at", "updated_at"):
                d[k] = d[k].isoformat() if d[k] is not None else None
            items.append(d)
        return {"items": items}

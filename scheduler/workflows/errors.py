"""Errors of durable workflows, as a tree under :class:`events.ThreadlogError`::

    ThreadlogError
    ├── WorkflowError                 workflow_error
    │   ├── NonDeterministic          nondeterministic
    │   ├── JournalTooLarge           journal_too_large
    │   └── StepFailed                step_failed (or the recorded code)
    │       ├── EventTimeout          event_timeout
    │       └── ChildFailed           child_failed
    ├── PayloadTooLarge
    │   └── ResultTooLarge            result_too_large
    └── NotFound
        └── UnknownWorkflow           unknown_workflow

:class:`StepFailed` is what a handler sees when a step failed for good (it may catch
it). The control-flow signals below derive from ``BaseException`` so a handler's
``except Exception`` cannot swallow them.
"""

from __future__ import annotations

from events.errors import NotFound, PayloadTooLarge, ThreadlogError
from events.workflow_events import ErrorInfo


class WorkflowError(ThreadlogError):
    code = "workflow_error"


class NonDeterministic(WorkflowError):
    """The handler's step sequence no longer matches the run's journal."""

    code = "nondeterministic"


class JournalTooLarge(WorkflowError):
    code = "journal_too_large"


class StepFailed(WorkflowError):
    """A step failed for good; ``step_no``, ``step_name`` and the recorded ``error``."""

    code = "step_failed"

    def __init__(self, step_no: int, step_name: str, error: ErrorInfo) -> None:
        super().__init__(f"step {step_no} ({step_name}) failed: [{error.code}] {error.message}",
                         details={"step_no": step_no, "step": step_name, "cause": error.code})
        self.step_no = step_no
        self.step_name = step_name
        self.error = error


class EventTimeout(StepFailed):
    code = "event_timeout"


class ChildFailed(StepFailed):
    code = "child_failed"


class ResultTooLarge(PayloadTooLarge):
    code = "result_too_large"


class UnknownWorkflow(NotFound):
    code = "unknown_workflow"


class RunAborted(BaseException):
    """Fail the run now with ``error`` (nondeterminism, journal too large)."""

    def __init__(self, error: ErrorInfo) -> None:
        super().__init__(error.message)
        self.error = error


class RunCanceled(BaseException):
    """The run was canceled: unwind the handler at the step boundary."""


class OwnershipLost(BaseException):
    """Another worker wrote to the run: this one stops touching it (and its message)."""


def error_info(exc: BaseException) -> ErrorInfo:
    """The recorded form of an exception raised by a step or handler."""
    if isinstance(exc, StepFailed):
        return ErrorInfo(code=exc.code, message=exc.message[:4_000])
    code = exc.code if isinstance(exc, ThreadlogError) else type(exc).__name__
    return ErrorInfo(code=code[:100], message=(str(exc) or type(exc).__name__)[:4_000])

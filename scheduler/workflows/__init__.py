"""Durable workflows: handlers whose steps are journaled as events on the run's own
aggregate (``events.workflow.<run_id>.>``), replayed on every resume, delivered to
workers through a JetStream work queue. See ``step`` (what a handler can do), ``worker``
(takeover, timers), ``api`` (the client), ``read`` (answers from the log).
"""

from scheduler.workflows.api import WorkflowClient
from scheduler.workflows.definition import RunOutcome, WorkflowDefinition, Workflows
from scheduler.workflows.errors import (
    ChildFailed,
    EventTimeout,
    JournalTooLarge,
    NonDeterministic,
    ResultTooLarge,
    StepFailed,
    UnknownWorkflow,
    WorkflowError,
)
from scheduler.workflows.queue import WorkflowConfig
from scheduler.workflows.read import RunStatus, StepInfo
from scheduler.workflows.retry import RetryPolicy
from scheduler.workflows.step import IdempotencyKey, Step
from scheduler.workflows.worker import WorkflowWorker

__all__ = [
    "ChildFailed", "EventTimeout", "IdempotencyKey", "JournalTooLarge", "NonDeterministic",
    "ResultTooLarge", "RetryPolicy", "RunOutcome", "RunStatus", "Step", "StepFailed",
    "StepInfo", "UnknownWorkflow", "WorkflowClient", "WorkflowConfig", "WorkflowDefinition",
    "WorkflowError", "WorkflowWorker", "Workflows",
]

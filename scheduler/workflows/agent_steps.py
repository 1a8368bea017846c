"""Agent steps: model calls and thread writes as durable workflow steps.

``step.generate_text(agent, thread_id, prompt=...)``, ``step.generate_object(...,
schema=...)``, ``step.create_thread(title=...)`` and ``step.save_messages(thread_id,
messages)`` are :meth:`Step.custom` steps (kinds ``agent`` and ``thread``) that send the
handlers' own commands over NATS request/reply (``cmd.<user>.agent.generate``,
``cmd.<user>.thread.create``, ``cmd.<user>.messages.save``). The scheduler does not
import ``handlers/``: the JSON bodies are built here, as any client would.

Guarantees
- The command id derives from (run, generation, step number): every attempt of a step,
  and a re-run after its worker died, sends the *same* command, which the handlers
  deduplicate (a generation already finished returns its first reply, a thread is
  created once, messages are saved once). A restarted run (new generation) sends new
  commands.
- The user is the run's (``workflow_started.user_id``) unless ``user_id`` is given; the
  command acts for that user, so ownership checks apply as for the user's own calls.
- The step's result is the command's ``result`` (a JSON object: ``text``,
  ``message_id``, ``usage``... for a generation; ``object`` for ``generate_object``);
  ``create_thread`` returns the thread id.

Failure modes: no handler serving the subject (``unavailable``) or no reply within
``WorkflowConfig.agent_timeout`` (``timeout``) fails the attempt; an error reply fails
it with its code (``unknown_agent``, ``forbidden``, ``budget_exceeded``...). Attempts
are retried per :data:`AGENT_RETRY` unless ``retry=`` is given; a failed generation's
retry gets the same (failed) reply back, so retries help with transient delivery only.
A run without a user and no ``user_id`` fails the step (``invalid_input``).
"""

from __future__ import annotations

import json
from collections.abc import Coroutine
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS

from events.errors import ThreadlogError, Unavailable, ValidationFailed
from events.ids import check_token, derived_id
from events.replies import Reply
from scheduler.workflows.retry import RetryPolicy

AGENT_RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.5)
"""Default retries of agent steps: transient delivery failures (no handler yet)."""
GENERATE = "cmd.{user}.agent.generate"
CREATE_THREAD = "cmd.{user}.thread.create"
SAVE_MESSAGES = "cmd.{user}.messages.save"


def step_command_id(run_id: str, generation: int, step_no: int) -> str:
    """The command id an agent step sends: the same for every attempt of the step."""
    return derived_id("workflow-step", run_id, f"g{generation}", f"s{step_no}")


async def send_command(nc: NATS, subject: str, body: dict[str, Any], timeout: float) -> Any:
    """Request ``body`` on ``subject``; the reply's result, or its error raised."""
    try:
        msg = await nc.request(subject, json.dumps(body).encode(), timeout=timeout)
    except nats.errors.NoRespondersError:
        raise Unavailable(f"no handler is serving {subject!r}",
                          details={"subject": subject}) from None
    except nats.errors.TimeoutError:
        raise ThreadlogError(f"no reply on {subject!r} in {timeout}s", code="timeout",
                             details={"subject": subject}) from None
    return Reply.model_validate_json(msg.data).unwrap()


class AgentSteps:
    """The agent step methods of :class:`scheduler.workflows.step.Step` (a mixin: Step
    supplies :meth:`custom` and :meth:`_agent_env`)."""

    def custom(self, kind: str, name: str, args: Any, fn: Any, *,
               retry: RetryPolicy | None = None, run_at: Any = None
               ) -> Coroutine[Any, Any, Any]:
        raise NotImplementedError

    def _agent_env(self) -> tuple[NATS, str | None, int, float]:
        """(connection, the run's user, generation, request timeout)."""
        raise NotImplementedError

    def _user(self, user_id: str | None) -> str:
        user = user_id or self._agent_env()[1]
        if user is None:
            raise ValidationFailed("an agent step needs a user: the run has none, pass "
                                   "user_id=", details={"field": "user_id"})
        return check_token(user, what="user_id")

    def _command(self, kind: str, name: str, subject: str, args: dict[str, Any],
                 retry: RetryPolicy | None, pick: str | None = None
                 ) -> Coroutine[Any, Any, Any]:
        nc, _, generation, timeout = self._agent_env()

        async def send(a: dict[str, Any], key: Any) -> Any:
            body = {k: v for k, v in a.items() if v is not None}
            body["command_id"] = step_command_id(key.run_id, generation, key.step_no)
            result = await send_command(nc, subject.format(user=a["user_id"]), body, timeout)
            return result.get(pick) if pick and isinstance(result, dict) else result

        return self.custom(kind, name, args, send, retry=retry or AGENT_RETRY)

    def generate_text(self, agent: str, thread_id: str, *, prompt: str | None = None,
                      prompt_message_id: str | None = None, user_id: str | None = None,
                      name: str = "generate_text", retry: RetryPolicy | None = None
                      ) -> Coroutine[Any, Any, Any]:
        """Run ``agent`` in ``thread_id`` on ``prompt`` (or ``prompt_message_id``)."""
        args = {"user_id": self._user(user_id), "agent": agent, "thread_id": thread_id,
                "prompt": prompt, "prompt_message_id": prompt_message_id}
        return self._command("agent", name, GENERATE, args, retry)

    def generate_object(self, agent: str, thread_id: str, *, schema: dict[str, Any],
                        prompt: str | None = None, prompt_message_id: str | None = None,
                        user_id: str | None = None, name: str = "generate_object",
                        retry: RetryPolicy | None = None) -> Coroutine[Any, Any, Any]:
        """Like :meth:`generate_text` with an output JSON ``schema``: the result's
        ``object`` is the validated object."""
        args = {"user_id": self._user(user_id), "agent": agent, "thread_id": thread_id,
                "prompt": prompt, "prompt_message_id": prompt_message_id,
                "output_schema": schema}
        return self._command("agent", name, GENERATE, args, retry)

    def create_thread(self, user_id: str | None = None, *, title: str | None = None,
                      summary: str | None = None, name: str = "create_thread",
                      retry: RetryPolicy | None = None) -> Coroutine[Any, Any, Any]:
        """Create a thread for the user; returns its id."""
        args = {"user_id": self._user(user_id), "title": title, "summary": summary}
        return self._command("thread", name, CREATE_THREAD, args, retry, pick="thread_id")

    def save_messages(self, thread_id: str, messages: list[dict[str, Any]], *,
                      user_id: str | None = None, name: str = "save_messages",
                      retry: RetryPolicy | None = None) -> Coroutine[Any, Any, Any]:
        """Save ``messages`` (``{role, content, ...}`` as ``cmd.messages.save`` takes
        them) in ``thread_id``."""
        args = {"user_id": self._user(user_id), "thread_id": thread_id,
                "messages": messages}
        return self._command("thread", name, SAVE_MESSAGES, args, retry)

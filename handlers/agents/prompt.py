"""The generation's first appends: the prompt (unless given by id) and the pending
assistant message.

Guarantees
- Two single appends, not one atomic batch (an atomic batch costs the server ~2-3 ms:
  on a single-replica file stream it is staged in a file store of its own): the prompt
  (command id ``<id>-u``), then the pending message (``<id>-p``) at the version the first
  one left. A crash between them leaves the prompt without its pending message; the
  re-sent (or resumed) command replays the prompt (``-u`` is among the thread's commands)
  and appends only the pending message, never a second prompt.
- With the agent's ``embedding_model``, the prompt is embedded once, before its append,
  and its ``message_embedded`` event goes in the prompt's (atomic) append.

Failure modes: a thread that is not the caller's is ``forbidden``/``not_found`` before
anything is appended; store errors propagate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from events import MessageSaved, TextPart, ThreadlogError, derived_id
from events.catalogue import Event
from handlers.agents.commands import Generate
from handlers.agents.definition import Agent, UsageHandler
from handlers.agents.generation_context import ContextMixin
from handlers.agents.result import embedded
from handlers.runner import CommandRunner
from handlers.threads.decisions import Decision, require_owned
from handlers.threads.state import ThreadState


class PromptMixin(ContextMixin):
    """Part of :class:`handlers.agents.generation.Generator` (see the module)."""

    runner: CommandRunner

    def _decide_prompt(self, cmd: Generate, agent: Agent, prompt_vector: list[float] | None
                       ) -> Callable[[ThreadState], Decision]:
        def decide(state: ThreadState) -> Decision:
            require_owned(state, cmd.user_id)
            prompt_id = derived_id("prompt", cmd.command_id)
            order = state.last_order + 1
            events: list[Event] = [MessageSaved(
                message_id=prompt_id, thread_id=state.thread_id, order=order,
                role="user", content=[TextPart(text=cmd.prompt or "")])]
            events += embedded(agent, prompt_id, state.thread_id, prompt_vector)
            return Decision(events, {"prompt_message_id": prompt_id, "order": order})

        return decide

    @staticmethod
    def _replay_prompt(cmd: Generate) -> Callable[[ThreadState], Decision]:
        def replay(state: ThreadState) -> Decision:
            prompt = next(e for e in state.commands[cmd.command_id + "-u"]
                          if isinstance(e, MessageSaved))
            return Decision([], {"prompt_message_id": prompt.message_id,
                                 "order": prompt.order})

        return replay

    def _decide_pending(self, cmd: Generate, agent: Agent, prompt: dict[str, Any] | None
                        ) -> Callable[[ThreadState], Decision]:
        """The pending assistant message after the prompt (``prompt``: the prompt step's
        result; ``None`` when the prompt is given by id)."""
        def decide(state: ThreadState) -> Decision:
            require_owned(state, cmd.user_id)
            if prompt is not None:
                prompt_id, order = prompt["prompt_message_id"], prompt["order"]
            else:
                prompt_id = cmd.prompt_message_id or ""
                info = state.messages.get(prompt_id)
                if info is None:
                    raise ThreadlogError(f"prompt message {prompt_id!r} not found",
                                         code="not_found", details={"message_id": prompt_id})
                order = info.order
            step = state.max_step.get(order, 0) + 1
            pending_id = derived_id("reply", cmd.command_id, "0")
            return Decision([MessageSaved(
                message_id=pending_id, thread_id=state.thread_id, order=order,
                step_order=step, role="assistant", content=[], status="pending",
                agent_name=agent.name, model=agent.model, prompt_message_id=prompt_id)],
                {"prompt_message_id": prompt_id, "message_id": pending_id, "order": order,
                 "step_order": step})

        return decide

    @staticmethod
    def _replay_pending(cmd: Generate) -> Callable[[ThreadState], Decision]:
        def replay(state: ThreadState) -> Decision:
            evs = [e for e in state.commands.get(cmd.command_id + "-p", [])
                   if isinstance(e, MessageSaved)]
            pending = evs[-1]
            return Decision([], {"prompt_message_id": pending.prompt_message_id,
                                 "message_id": pending.message_id, "order": pending.order,
                                 "step_order": pending.step_order})

        return replay

    async def _save_prompt(self, cmd: Generate, agent: Agent, handler: UsageHandler | None
                           ) -> tuple[Decision, int, bool, list[float] | None]:
        """Append the prompt (unless given by id) and the pending message; each step is
        skipped (replayed) when the thread already holds it. Returns the pending step's
        decision, the thread's version after it, whether the prompt was saved before this
        call (a re-sent command) and the prompt's embedding if it was computed."""
        commands = (await self.runner.states.get(cmd.thread_id)).commands
        done = cmd.command_id + "-p" in commands
        saved = done or cmd.command_id + "-u" in commands
        prompt: dict[str, Any] | None = None
        vector = None
        if cmd.prompt_message_id is None and not done:
            vector = None if saved else await self._embed_prompt(cmd, agent, handler)
            if not saved:  # both in one round trip when nothing comes in between
                _, decision, seq = await self.runner.apply_two(
                    cmd.thread_id, cmd.user_id,
                    (cmd.command_id + "-u", self._decide_prompt(cmd, agent, vector),
                     self._replay_prompt(cmd)),
                    (cmd.command_id + "-p",
                     lambda st, d: self._decide_pending(cmd, agent, d.result)(st),
                     self._replay_pending(cmd)),
                    correlation_id=cmd.command_id)
                return decision, seq, saved, vector
            decision, _ = await self.runner.apply(
                cmd.thread_id, cmd.command_id + "-u", cmd.user_id,
                self._decide_prompt(cmd, agent, vector), self._replay_prompt(cmd),
                correlation_id=cmd.command_id)
            prompt = decision.result
        decision, seq = await self.runner.apply(
            cmd.thread_id, cmd.command_id + "-p", cmd.user_id,
            self._decide_pending(cmd, agent, prompt), self._replay_pending(cmd),
            correlation_id=cmd.command_id)
        return decision, seq, saved, vector


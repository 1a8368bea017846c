"""The workflow subjects over a real server with auth: users act on their own runs
(``cmd.<u>.workflow.*``, ``query.<u>.workflows.*``), operators on any run
(``ops.workflows.*``); agent steps drive the handlers' own commands."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from events import new_id
from scheduler.workflows import Step, Workflows
from tests.conftest import ConnectAs, RuntimeFactory
from threadlog import Agent
from threadlog.app import App
from threadlog.parts import WorkflowsPart
from threadlog.runtime import Runtime

AppRuntime = Callable[[App], AbstractAsyncContextManager[Runtime]]


@pytest.fixture
def app_runtime(runtime_factory: RuntimeFactory) -> AppRuntime:
    """``async with app_runtime(app) as rt``: handlers + workflows part of ``app``; the
    run queue stream is deleted afterwards."""

    @asynccontextmanager
    async def make(app: App) -> AsyncIterator[Runtime]:
        async with runtime_factory(app=app) as rt:
            try:
                yield rt
            finally:
                with suppress(Exception):
                    await rt.nc.jetstream().delete_stream(f"{rt.settings.events_stream}_WF")

    return make


async def ask(nc: NATS, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    msg = await nc.request(subject, json.dumps(body).encode(), timeout=30)
    reply: dict[str, Any] = json.loads(msg.data)
    return reply


def ok(reply: dict[str, Any]) -> Any:
    assert reply["ok"], reply
    return reply["result"]


def error_code(reply: dict[str, Any]) -> str:
    assert not reply["ok"], reply
    return str(reply["error"]["code"])


def waiting_app() -> App:
    wfs = Workflows()

    @wfs.define("approve")
    async def approve(step: Step, args: Any) -> Any:
        return {"asked": args, "answer": await step.await_event("go")}

    return App(workflows=wfs)


def wf(rt: Runtime) -> WorkflowsPart:
    part: WorkflowsPart = rt.parts["workflows"]
    return part


async def test_a_user_starts_lists_and_finishes_its_own_run_and_another_user_is_forbidden(
        app_runtime: AppRuntime, connect_as: ConnectAs) -> None:
    alice_id, bob_id = "alice" + new_id()[:6], "bob" + new_id()[:6]
    alice = (await connect_as("user", alice_id)).nc
    bob = (await connect_as("user", bob_id)).nc
    async with app_runtime(waiting_app()) as rt:
        cid = new_id()
        start = {"command_id": cid, "name": "approve", "args": {"q": 1}}
        run_id = ok(await ask(alice, f"cmd.{alice_id}.workflow.start", start))["run_id"]
        again = ok(await ask(alice, f"cmd.{alice_id}.workflow.start", start))
        assert again["run_id"] == run_id  # idempotent by command id
        listed = ok(await ask(alice, f"query.{alice_id}.workflows.list", {}))["items"]
        assert [(r["run_id"], r["user_id"]) for r in listed] == [(run_id, alice_id)]
        assert ok(await ask(bob, f"query.{bob_id}.workflows.list", {}))["items"] == []
        for subject, body in [("query.{u}.workflows.status", {"run_id": run_id}),
                              ("query.{u}.workflows.steps", {"run_id": run_id}),
                              ("cmd.{u}.workflow.cancel", {"command_id": new_id(),
                                                           "run_id": run_id}),
                              ("cmd.{u}.workflow.send_event", {
                                  "command_id": new_id(), "run_id": run_id, "name": "go"})]:
            assert error_code(await ask(bob, subject.format(u=bob_id), body)) == "forbidden"
        named_alice = {"command_id": new_id(), "run_id": run_id, "user_id": alice_id}
        assert error_code(await ask(bob, f"cmd.{bob_id}.workflow.cancel",
                                    named_alice)) == "forbidden"
        ok(await ask(alice, f"cmd.{alice_id}.workflow.send_event",
                     {"command_id": new_id(), "run_id": run_id, "name": "go", "value": "yes"}))
        st = await wf(rt).client.wait(run_id, timeout=20)
        assert (st.state, st.result) == ("completed", {"asked": {"q": 1}, "answer": "yes"})
        status = ok(await ask(alice, f"query.{alice_id}.workflows.status", {"run_id": run_id}))
        assert (status["state"], status["user_id"]) == ("completed", alice_id)
        steps = ok(await ask(alice, f"query.{alice_id}.workflows.steps",
                             {"run_id": run_id}))["items"]
        assert [(s["kind"], s["name"], s["status"]) for s in steps] == [
            ("event", "go", "completed")]


async def test_a_user_cancels_its_waiting_run_and_refusals_are_structured(
        app_runtime: AppRuntime, connect_as: ConnectAs) -> None:
    user = "carol" + new_id()[:6]
    nc = (await connect_as("user", user)).nc
    async with app_runtime(waiting_app()) as rt:
        run_id = ok(await ask(nc, f"cmd.{user}.workflow.start",
                              {"command_id": new_id(), "name": "approve"}))["run_id"]
        cancel = {"command_id": new_id(), "run_id": run_id, "reason": "changed my mind"}
        ok(await ask(nc, f"cmd.{user}.workflow.cancel", cancel))
        ok(await ask(nc, f"cmd.{user}.workflow.cancel", cancel))  # re-sent: same answer
        st = await wf(rt).client.wait(run_id, timeout=20)
        assert st.state == "canceled"
        assert error_code(await ask(nc, f"cmd.{user}.workflow.cancel", {
            "command_id": new_id(), "run_id": "nope"})) == "not_found"
        assert error_code(await ask(nc, f"cmd.{user}.workflow.start", {
            "command_id": new_id(), "name": "missing"})) == "unknown_workflow"
        assert error_code(await ask(nc, f"cmd.{user}.workflow.start", {
            "command_id": new_id(), "name": "approve", "extra": 1})) == "invalid_input"
        assert error_code(await ask(nc, f"cmd.{user}.workflow.start", {
            "command_id": new_id(), "name": "approve", "on_complete": "x"})) == \
            "unknown_workflow"


async def test_an_operator_lists_and_cancels_any_users_run(
        app_runtime: AppRuntime, connect_as: ConnectAs) -> None:
    user = "dave" + new_id()[:6]
    nc = (await connect_as("user", user)).nc
    ops = (await connect_as("operator", "ops")).nc
    async with app_runtime(waiting_app()) as rt:
        run_id = ok(await ask(nc, f"cmd.{user}.workflow.start",
                              {"command_id": new_id(), "name": "approve"}))["run_id"]
        items = ok(await ask(ops, "ops.workflows.list", {"user_id": user}))["items"]
        assert [r["run_id"] for r in items] == [run_id]
        assert ok(await ask(ops, "ops.workflows.status", {"run_id": run_id}))["user_id"] == user
        ok(await ask(ops, "ops.workflows.cancel", {"command_id": new_id(), "run_id": run_id}))
        assert (await wf(rt).client.wait(run_id, timeout=20)).state == "canceled"


def support_app(model: str) -> App:
    wfs = Workflows()

    @wfs.define("support")
    async def support(step: Step, args: Any) -> Any:
        tid = await step.create_thread(title="Support")
        answer = await step.generate_text("helper", tid, prompt=args["question"])
        suggestion = await step.generate_object(
            "helper", tid, prompt="Suggest a next step", schema={
                "type": "object", "properties": {"action": {"type": "string"}},
                "required": ["action"]})
        saved = await step.save_messages(tid, [{"role": "assistant", "content": (
            f"Suggested: {suggestion['object']['action']}")}])
        return {"thread_id": tid, "text": answer["text"],
                "object": suggestion["object"], "saved": len(saved["messages"])}

    return App(agents=[Agent(name="helper", model=model)], workflows=wfs)


async def test_a_user_connection_drives_an_agent_workflow_end_to_end(
        app_runtime: AppRuntime, connect_as: ConnectAs) -> None:
    user = "erin" + new_id()[:6]
    nc = (await connect_as("user", user)).nc
    async with app_runtime(support_app("scripted/wfsupport" + new_id()[:6])) as rt:
        run_id = ok(await ask(nc, f"cmd.{user}.workflow.start", {
            "command_id": new_id(), "name": "support",
            "args": {"question": "My order is late"}}))["run_id"]
        st = await wf(rt).client.wait(run_id, timeout=60)
        assert st.state == "completed", st.error
        result = st.result
        assert result["text"] == "You said: My order is late"
        assert isinstance(result["object"]["action"], str) and result["saved"] == 1
        steps = ok(await ask(nc, f"query.{user}.workflows.steps", {"run_id": run_id}))["items"]
        assert [(s["kind"], s["name"]) for s in steps] == [
            ("thread", "create_thread"), ("agent", "generate_text"),
            ("agent", "generate_object"), ("thread", "save_messages")]
        # The thread is the user's own: the user reads it on its own subjects.
        msgs = await rt.client(user).query("query.messages.list", thread_id=result["thread_id"],
                                           limit=10) if "projector" in rt.parts else None
        assert msgs is None or msgs.value["items"]

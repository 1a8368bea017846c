"""Rate limits over the real server: a user over a limit is refused before the model is
called and before anything is appended, with ``retry_after_s``; other users are not
affected; the limit holds across processes; operators raise one user's limit; users
cannot set limits; buckets refill; tokens are trued up with the actual usage."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
import time_machine
from nats.aio.client import Client as NATS

from events import ThreadlogError, new_id
from handlers.agents.definition import Agent
from handlers.client import Client
from handlers.llm.call_settings import NO_BACKOFF, CallSettings
from handlers.llm.scripted import Reply, scripted
from handlers.rate_limits import RateLimited, RateLimiter, bucket_name, subjects
from tests.conftest import ConnectAs, RuntimeFactory
from threadlog.runtime import Runtime, running

MAX_TOKENS = 100


def agent_for(model: str) -> Agent:
    return Agent(name="clerk", model=f"scripted/{model}",
                 call_settings=CallSettings(max_retries=0, backoff=NO_BACKOFF,
                                            max_tokens=MAX_TOKENS))


@contextlib.asynccontextmanager
async def limited(runtime_factory: RuntimeFactory, nc: NATS, **settings: Any
                  ) -> AsyncIterator[Runtime]:
    """A runtime with ``settings`` (rate limits) and a scripted agent ``clerk``; its
    rate-limit bucket is deleted afterwards."""
    model = "rl" + new_id()[:8]
    async with runtime_factory(agents=[agent_for(model)], **settings) as rt:
        rt.parts["model"] = model
        try:
            yield rt
        finally:
            with contextlib.suppress(Exception):
                await nc.jetstream().delete_key_value(bucket_name(rt.settings.events_stream))


def limiter(rt: Runtime) -> RateLimiter:
    found = rt.parts["rate_limits"]
    assert isinstance(found, RateLimiter)
    return found


async def refused(c: Client, tid: str, prompt: str = "hi") -> ThreadlogError:
    with pytest.raises(ThreadlogError) as ei:
        await c.generate_text("clerk", tid, prompt)
    return ei.value


async def test_over_the_message_limit_is_refused_before_the_model_and_appends_nothing(
        runtime_factory: RuntimeFactory, nc: NATS) -> None:
    async with limited(runtime_factory, nc, rate_messages_per_minute=2) as rt:
        alice, bob = rt.client("alice"), rt.client("bob")
        tid = (await alice.create_thread()).value["thread_id"]
        for _ in range(2):
            await alice.generate_text("clerk", tid, "hi")
        calls, seq = len(scripted.requests(rt.parts["model"])), await rt.store.last_seq()
        err = await refused(alice, tid)
        assert err.code == "rate_limited"
        assert err.details["limit"] == "messages_per_minute"
        retry = err.details["retry_after_s"]
        assert isinstance(retry, float) and 0 < retry <= 30  # one message of 2 per minute
        assert len(scripted.requests(rt.parts["model"])) == calls  # no model call
        assert await rt.store.last_seq() == seq  # no prompt, message or usage appended
        bob_tid = (await bob.create_thread()).value["thread_id"]
        assert (await bob.generate_text("clerk", bob_tid, "hi")).value["text"] is not None


async def test_the_limit_holds_across_two_processes(runtime_factory: RuntimeFactory,
                                                    nc: NATS) -> None:
    async with limited(runtime_factory, nc, rate_messages_per_minute=5) as rt1, \
            running(rt1.settings) as rt2:
        one, two = limiter(rt1), limiter(rt2)
        assert one is not two and one.store.bucket == two.store.bucket
        results = await asyncio.gather(
            *(lim.admit("carol", 1) for lim in [one, two] * 6), return_exceptions=True)
        admitted = [r for r in results if not isinstance(r, BaseException)]
        refusals = [r for r in results if isinstance(r, RateLimited)]
        assert (len(admitted), len(refusals)) == (5, 7)
        # Commands, whichever process takes them: carol has none left, dave has his own.
        c = rt1.client("carol")
        tid = (await c.create_thread()).value["thread_id"]
        assert (await refused(c, tid)).code == "rate_limited"
        await two.admit("dave", 1)


async def test_an_operator_override_raises_one_users_limit(
        runtime_factory: RuntimeFactory, nc: NATS, connect_as: ConnectAs) -> None:
    async with limited(runtime_factory, nc, rate_messages_per_minute=1) as rt:
        erin, frank = rt.client("erin"), rt.client("frank")
        etid = (await erin.create_thread()).value["thread_id"]
        ftid = (await frank.create_thread()).value["thread_id"]
        await erin.generate_text("clerk", etid, "hi")
        await frank.generate_text("clerk", ftid, "hi")
        assert (await refused(erin, etid)).code == "rate_limited"
        ops = Client((await connect_as("operator", "ops1")).nc, user_id="ops1")
        status = (await ops.request(subjects.SET_RATE_LIMITS, {
            "command_id": new_id(), "user_id": "erin", "messages_per_minute": 4})).value
        assert status["messages_per_minute"] == 4 and status["override"] == {
            "messages_per_minute": 4, "tokens_per_minute": None}
        for _ in range(3):  # 4 per minute, 1 used: 3 more at once
            await erin.generate_text("clerk", etid, "hi")
        assert (await refused(erin, etid)).code == "rate_limited"
        assert (await refused(frank, ftid)).code == "rate_limited"  # still the default
        got = (await ops.request(subjects.GET_RATE_LIMITS, {"user_id": "frank"})).value
        assert got["messages_per_minute"] == 1 and got["override"] is None
        cleared = (await ops.request(subjects.SET_RATE_LIMITS, {
            "command_id": new_id(), "user_id": "erin"})).value
        assert cleared["override"] is None and cleared["messages_per_minute"] == 1


async def test_a_user_cannot_set_rate_limits(runtime_factory: RuntimeFactory, nc: NATS,
                                             connect_as: ConnectAs) -> None:
    async with limited(runtime_factory, nc, rate_messages_per_minute=1) as rt:
        user = await connect_as("user", "gina")
        body = {"command_id": new_id(), "user_id": "gina", "messages_per_minute": 1000}
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await user.nc.request(subjects.SET_RATE_LIMITS, json.dumps(body).encode(),
                                  timeout=0.5)
        await user.violation(subjects.SET_RATE_LIMITS)
        assert (await limiter(rt).status("gina"))["override"] is None


async def test_overrides_are_validated_strictly(runtime_factory: RuntimeFactory,
                                                nc: NATS) -> None:
    async with limited(runtime_factory, nc) as rt:
        ops = rt.client("ops")
        for bad in ({"messages_per_minute": -1}, {"messages_per_minute": "5"},
                    {"tokens_per_minute": 5.0}, {"messages_per_minute": True},
                    {"tokens_per_minute": 10**10}, {"per_hour": 5}, {"user_id": "a.b"}):
            body = {"command_id": new_id(), "user_id": "hank", **bad}
            with pytest.raises(ThreadlogError) as ei:
                await ops.request(subjects.SET_RATE_LIMITS, body)
            assert ei.value.code in ("invalid_input", "invalid_id"), bad
        assert (await limiter(rt).status("hank"))["override"] is None


async def test_the_bucket_refills(runtime_factory: RuntimeFactory, nc: NATS) -> None:
    async with limited(runtime_factory, nc, rate_messages_per_minute=2) as rt:
        c = rt.client("ivy")
        tid = (await c.create_thread()).value["thread_id"]
        await c.generate_text("clerk", tid, "hi")
        await c.generate_text("clerk", tid, "hi")
        retry = (await refused(c, tid)).details["retry_after_s"]
        with time_machine.travel(time.time() + retry - 2, tick=True):
            assert (await refused(c, tid)).details["retry_after_s"] <= 2.5
        with time_machine.travel(time.time() + retry + 0.5, tick=True):
            assert (await c.generate_text("clerk", tid, "hi")).value["text"] is not None
            assert (await refused(c, tid)).code == "rate_limited"  # one refilled, not two


async def test_tokens_are_estimated_before_and_trued_up_after(
        runtime_factory: RuntimeFactory, nc: NATS) -> None:
    async with limited(runtime_factory, nc, rate_tokens_per_minute=1_000) as rt:
        c = rt.client("jo")
        tid = (await c.create_thread()).value["thread_id"]
        scripted.script(rt.parts["model"], [Reply(content="long", usage=(600, 350))])
        await c.generate_text("clerk", tid, "hi")
        left = (await limiter(rt).status("jo"))["tokens_available"]
        assert 50 <= left < 70  # 1000 - 950 actual (the estimate of 101 was replaced)
        err = await refused(c, tid)  # the estimate: 1 prompt token + max_tokens 100
        assert err.details["limit"] == "tokens_per_minute" and err.details["needed"] == 101
        assert err.details["retry_after_s"] > 0
        assert (await limiter(rt).status("jo"))["tokens_available"] < 101  # nothing taken


async def test_no_limit_reads_nothing(runtime_factory: RuntimeFactory, nc: NATS,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    async with limited(runtime_factory, nc) as rt:
        lim = limiter(rt)
        assert lim.store.ready.is_set()

        async def no_read(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("an unlimited user's admission read the bucket")

        monkeypatch.setattr(lim.store.kv, "get", no_read)
        assert await lim.admit("kim", 10**9) is None


async def test_a_resent_generation_is_answered_not_refused_nor_charged_again(
        runtime_factory: RuntimeFactory, nc: NATS) -> None:
    """A client retrying after a lost reply, at its limit: the re-send (same command id)
    answers the recorded result, takes nothing from the bucket, calls no model; a new
    command is still refused (reproduction: the re-send got ``rate_limited``)."""
    async with limited(runtime_factory, nc, rate_messages_per_minute=1) as rt:
        c = rt.client("erin")
        tid = (await c.create_thread()).value["thread_id"]
        cid = new_id()
        first = await c.generate_text("clerk", tid, "hi", command_id=cid)
        calls = len(scripted.requests(rt.parts["model"]))
        level = await limiter(rt).store.state("erin")
        assert level  # the first generation took from the bucket
        again = await c.generate_text("clerk", tid, "hi", command_id=cid)
        assert again.value == first.value
        assert len(scripted.requests(rt.parts["model"])) == calls
        assert await limiter(rt).store.state("erin") == level
        assert (await refused(c, tid)).code == "rate_limited"

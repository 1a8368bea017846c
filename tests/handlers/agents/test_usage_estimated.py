"""A generation's usage rows say whether the provider reported the usage (issue 13, part
5): a streamed answer from a provider without a usage chunk is ``estimated``; a call that
is not streamed, or a stream with usage, is not."""

from __future__ import annotations

from events import Aggregate, new_id
from handlers.agents.definition import Agent
from handlers.llm.call_settings import NO_BACKOFF, CallSettings
from tests.conftest import RuntimeFactory
from tests.handlers.llm.fake_openai_server import FakeOpenAIServer, FakeReply
from tests.handlers.llm.test_stream_usage_estimated import NoStreamUsageServer
from threadlog.parts import projector_part


async def test_usage_rows_mark_streamed_usage_the_provider_did_not_report(
        runtime_factory: RuntimeFactory) -> None:
    async with FakeOpenAIServer() as with_usage, NoStreamUsageServer() as without:
        model = "gpt-" + new_id()[:8]
        settings = CallSettings(max_retries=0, backoff=NO_BACKOFF, timeout=10)
        agents = [Agent(name="counted", model=f"openai/{model}", call_settings=settings,
                        provider_options=with_usage.provider_options),
                  Agent(name="guessed", model=f"openai/{model}", call_settings=settings,
                        provider_options=without.provider_options)]
        for srv in (with_usage, without):
            srv.script(model, *[FakeReply.of_text("hi there", usage=(5, 3))] * 2)
        async with runtime_factory(agents=agents, extra_parts=[projector_part]) as rt:
            c = rt.client("u1")
            tid = (await c.create_thread()).value["thread_id"]
            for agent in ("guessed", "counted"):
                stream = c.stream_text(agent, tid, "hello")
                assert "".join([d async for d in stream]) == "hi there"
                await c.generate_text(agent, tid, "hello")
            # usage is on the user's own aggregate: read up to its last event
            last = max(r.seq for r in await rt.store.read(Aggregate("usage", "u1")))
            rows = await c.query("ops.sql", min_seq=last, sql=(
                "SELECT agent_name, estimated, total_tokens FROM usage "
                f"WHERE thread_id = '{tid}' ORDER BY seq"))
            got = [tuple(r) for r in rows.value["rows"]]
            streamed_guess, plain_guess, streamed_counted, plain_counted = got
            assert streamed_guess[:2] == ("guessed", True) and streamed_guess[2] != 8
            assert plain_guess == ("guessed", False, 8)
            assert streamed_counted == ("counted", False, 8)
            assert plain_counted == ("counted", False, 8)

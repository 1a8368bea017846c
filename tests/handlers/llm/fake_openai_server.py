"""A real OpenAI-compatible HTTP server for tests (aiohttp, loopback, free port).

Serves ``POST /v1/chat/completions`` with scripted replies per model (or a default echo),
JSON or SSE streaming (with a usage chunk when ``stream_options.include_usage``), tool calls,
and scripted HTTP errors (429 with ``retry-after``, 500, 400...) or hangs. Every request is
recorded with its headers, so tests can count attempts and check what was sent::

    async with FakeOpenAIServer() as server:
        server.script("gpt-fake", FakeReply.error(500), FakeReply.text("hi"))
        await call_model("openai/gpt-fake", msgs, provider_options=server.provider_options)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class FakeReply:
    text: str = ""
    tool_calls: tuple[tuple[str, str, dict[str, Any]], ...] = ()  # (id, name, args)
    status: int = 200
    error_message: str = "scripted error"
    headers: dict[str, str] = field(default_factory=dict)
    usage: tuple[int, int] = (7, 3)
    hang: bool = False

    @classmethod
    def of_text(cls, text: str, *, usage: tuple[int, int] = (7, 3)) -> FakeReply:
        return cls(text=text, usage=usage)

    @classmethod
    def tool_call(cls, call_id: str, name: str, args: dict[str, Any]) -> FakeReply:
        return cls(tool_calls=((call_id, name, args),))

    @classmethod
    def error(cls, status: int, message: str = "scripted error",
              headers: dict[str, str] | None = None) -> FakeReply:
        return cls(status=status, error_message=message, headers=headers or {})


@dataclass(frozen=True)
class RecordedRequest:
    body: dict[str, Any]
    headers: dict[str, str]


class FakeOpenAIServer:
    API_KEY = "sk-test-fake-0123456789abcdef"

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._queues: dict[str, deque[FakeReply]] = {}
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()
        self.base_url = ""

    def script(self, model: str, *replies: FakeReply) -> None:
        self._queues.setdefault(model, deque()).extend(replies)

    def requests_for(self, model: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.body.get("model") == model]

    @property
    def provider_options(self) -> dict[str, Any]:
        return {"api_base": self.base_url, "api_key": self.API_KEY}

    async def __aenter__(self) -> FakeOpenAIServer:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(RecordedRequest(body, dict(request.headers)))
        queue = self._queues.get(body.get("model", ""))
        reply = queue.popleft() if queue else self._echo(body)
        if reply.hang:
            await self._release.wait()
        if reply.status != 200:
            return web.json_response(
                {"error": {"message": reply.error_message, "type": "scripted",
                           "code": str(reply.status)}},
                status=reply.status, headers=reply.headers)
        if body.get("stream"):
            return await self._stream(request, body, reply)
        return web.json_response(self._completion(body, reply))

    @staticmethod
    def _echo(body: dict[str, Any]) -> FakeReply:
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        return FakeReply.of_text("echo: " + str(users[-1]["content"] if users else ""))

    @staticmethod
    def _usage(reply: FakeReply) -> dict[str, Any]:
        prompt, completion = reply.usage
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": 2},
                "completion_tokens_details": {"reasoning_tokens": 1}}

    @staticmethod
    def _tool_calls(reply: FakeReply) -> list[dict[str, Any]]:
        return [{"id": cid, "type": "function",
                 "function": {"name": name, "arguments": json.dumps(args)}}
                for cid, name, args in reply.tool_calls]

    def _completion(self, body: dict[str, Any], reply: FakeReply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.tool_calls:
            message["tool_calls"] = self._tool_calls(reply)
        return {"id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion",
                "created": int(time.time()), "model": body["model"],
                "choices": [{"index": 0, "message": message,
                             "finish_reason": "tool_calls" if reply.tool_calls else "stop"}],
                "usage": self._usage(reply)}

    async def _stream(self, request: web.Request, body: dict[str, Any],
                      reply: FakeReply) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {"id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": body["model"]}

        async def send(choices: list[dict[str, Any]], **extra: Any) -> None:
            payload = {**base, "choices": choices, **extra}
            await response.write(f"data: {json.dumps(payload)}\n\n".encode())

        for n, word in enumerate(reply.text.split(" ") if reply.text else []):
            piece = word if n == 0 else " " + word
            await send([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        for i, call in enumerate(self._tool_calls(reply)):
            arguments = call["function"]["arguments"]
            half = len(arguments) // 2
            await send([{"index": 0, "finish_reason": None, "delta": {"tool_calls": [
                {"index": i, "id": call["id"], "type": "function",
                 "function": {"name": call["function"]["name"], "arguments": arguments[:half]}}
            ]}}])
            await send([{"index": 0, "finish_reason": None, "delta": {"tool_calls": [
                {"index": i, "function": {"arguments": arguments[half:]}}]}}])
        await send([{"index": 0, "delta": {},
                     "finish_reason": "tool_calls" if reply.tool_calls else "stop"}])
        if (body.get("stream_options") or {}).get("include_usage"):
            await send([], usage=self._usage(reply))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

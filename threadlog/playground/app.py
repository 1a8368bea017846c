"""The playground's HTTP side: a Starlette app serving the page, JSON endpoints for what
the page reads and does, and Server-Sent Events for live data.

=============================================================  ==============================
``GET  /``                                                     the page (``static/``)
``GET  /api/whoami``                                           role, name, agents
``GET  /api/users?search=&offset=&limit=``                     users (operators: all)
``GET  /api/users/{u}/threads?search=&cursor=&limit=``         threads, newest first
``POST /api/users/{u}/threads``                                ``{title?}``: a new thread
``GET  /api/users/{u}/threads/{t}/messages?cursor=&min_seq=``   messages, oldest first
``POST /api/users/{u}/threads/{t}/generate``                   ``{agent, prompt}`` (streamed)
``POST /api/users/{u}/threads/{t}/approval``                   ``{tool_call_id, approved}``
``GET  /api/users/{u}/threads/{t}/canvases?ids=``              canvases, documents, edits
``POST /api/users/{u}/threads/{t}/context``                    ``{agent, prompt, options?}``
``GET  /api/users/{u}/usage?period=``                          usage, budget, invoices
``GET  /api/users/{u}/workflows``                              runs with their steps
``POST /api/users/{u}/workflows/{run}/{cancel|restart}``       act on a run
``GET  /api/users/{u}/live``                                   SSE: ``live.<u>.>``
=============================================================  ==============================

Every JSON answer is threadlog's reply shape ``{ok, result | error}``; the HTTP status
follows the error code (``forbidden`` 403, ``not_found`` 404, invalid input 400,
``timeout`` 504, ``unavailable`` 503, other refusals 409, ``internal`` 500).

Guarantees: the app binds to the host it is given (``127.0.0.1`` by default in the CLI)
and holds no credential of its own beyond its one NATS connection; live data is pushed
(a subscription per open page), never polled. The SSE stream starts with a ``ready``
event once the server has accepted the subscription, so nothing published after
``ready`` is missed, or with ``refused`` when the server refused it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from events.connection import NatsEndpoint
from events.errors import ThreadlogError, ValidationFailed
from threadlog.playground import operations as ops
from threadlog.playground.bridge import Bridge

STATIC = Path(__file__).parent / "static"
STATUS = {"forbidden": 403, "not_found": 404, "invalid_input": 400, "invalid_id": 400,
          "invalid_json": 400, "timeout": 504, "unavailable": 503, "internal": 500,
          "payload_too_large": 413, "rate_limited": 429}
MAX_BODY = 200_000


def reply_response(reply: dict[str, Any]) -> JSONResponse:
    """``reply`` with the HTTP status of its error code (200 when ok)."""
    if reply.get("ok"):
        return JSONResponse(reply)
    code = (reply.get("error") or {}).get("code", "internal")
    return JSONResponse(reply, status_code=STATUS.get(code, 409))


Handler = Callable[[Request, Bridge], Awaitable[dict[str, Any]]]


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint: input errors (``ThreadlogError``) become structured 400 replies."""
    async def run(request: Request) -> Response:
        bridge: Bridge = request.app.state.bridge
        try:
            return reply_response(await handler(request, bridge))
        except ThreadlogError as exc:
            return reply_response({"ok": False, "error": {
                "code": exc.code, "message": exc.message, "details": exc.details}})
    return run


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object. Only ``application/json`` from the page's own origin:
    a cross-site form or ``text/plain`` POST (which a browser sends without asking) is
    refused, so another site cannot act with this playground's credential."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise ThreadlogError("send application/json", code="invalid_input")
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host')}":
        raise ThreadlogError("cross-origin request refused", code="forbidden",
                             details={"origin": origin})
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ThreadlogError("request body too large", code="payload_too_large")
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise ThreadlogError("the body is not JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ThreadlogError("the body must be a JSON object", code="invalid_json")
    return body


def _str(body: dict[str, Any], key: str, default: str | None = None) -> str:
    v = body.get(key, default)
    if not isinstance(v, str):
        raise ValidationFailed(f"{key} must be a string",
                             details={"field": key})
    return v


async def whoami(request: Request, bridge: Bridge) -> dict[str, Any]:
    st = request.app.state
    return {"ok": True, "result": {**bridge.identity.to_dict(), "agents": st.agents,
                                   "default_user": st.default_user or (
                                       bridge.identity.name
                                       if bridge.identity.role == "user" else None)}}


async def users(request: Request, bridge: Bridge) -> dict[str, Any]:
    q = request.query_params
    offset = q.get("offset", "0")
    return await ops.users(bridge, q.get("search"), int(offset) if offset.isdigit() else 0,
                           ops.page_limit(q.get("limit")))


async def threads(request: Request, bridge: Bridge) -> dict[str, Any]:
    q, p = request.query_params, request.path_params
    return await ops.threads(bridge, p["user"], q.get("search"), q.get("cursor") or None,
                             ops.page_limit(q.get("limit")))


async def create_thread(request: Request, bridge: Bridge) -> dict[str, Any]:
    body = await json_body(request)
    title = body.get("title")
    return await ops.create_thread(bridge, request.path_params["user"],
                                   title if isinstance(title, str) else None)


async def messages(request: Request, bridge: Bridge) -> dict[str, Any]:
    p, q = request.path_params, request.query_params
    min_seq = q.get("min_seq", "")
    return await ops.messages(bridge, p["user"], p["thread"], q.get("cursor") or None,
                              ops.page_limit(q.get("limit"), 100),
                              int(min_seq) if min_seq.isdigit() else None)


async def generate(request: Request, bridge: Bridge) -> dict[str, Any]:
    p, body = request.path_params, await json_body(request)
    return await ops.generate(bridge, p["user"], p["thread"], _str(body, "agent"),
                              _str(body, "prompt"))


async def approval(request: Request, bridge: Bridge) -> dict[str, Any]:
    p, body = request.path_params, await json_body(request)
    approved = body.get("approved")
    if not isinstance(approved, bool):
        raise ValidationFailed("approved must be true or false",
                               details={"field": "approved"})
    reason = body.get("reason")
    return await ops.approval(bridge, p["user"], p["thread"], _str(body, "tool_call_id"),
                              approved, reason if isinstance(reason, str) else None)


async def canvases(request: Request, bridge: Bridge) -> dict[str, Any]:
    p = request.path_params
    ids = [i for i in request.query_params.get("ids", "").split(",") if i]
    return await ops.canvases(bridge, p["user"], p["thread"], ids)


async def context(request: Request, bridge: Bridge) -> dict[str, Any]:
    p, body = request.path_params, await json_body(request)
    ops.check_ids(p["user"], p["thread"])
    options = body.get("options")
    payload: dict[str, Any] = {"user_id": p["user"], "thread_id": p["thread"],
                               "agent": _str(body, "agent"), "prompt": _str(body, "prompt")}
    if isinstance(options, dict) and options:
        payload["context_options"] = options
    return await bridge.request(f"query.{p['user']}.agent.context", payload)


async def usage(request: Request, bridge: Bridge) -> dict[str, Any]:
    return await ops.usage(bridge, request.path_params["user"],
                           request.query_params.get("period") or None)


async def workflows(request: Request, bridge: Bridge) -> dict[str, Any]:
    return await ops.workflows(bridge, request.path_params["user"])


async def workflow_action(request: Request, bridge: Bridge) -> dict[str, Any]:
    p = request.path_params
    return await ops.workflow_action(bridge, p["user"], p["run"], p["op"])


async def live(request: Request) -> Response:
    """SSE of ``live.<u>.>``: a ``ready`` event, then one ``live`` event per message; a
    ``refused`` event (the error) and the end when the server refuses the subscription."""
    bridge: Bridge = request.app.state.bridge
    user = request.path_params["user"]
    try:
        ops.check_ids(user)
    except ThreadlogError as exc:
        return reply_response({"ok": False, "error": {"code": exc.code,
                                                      "message": exc.message}})

    async def events() -> AsyncIterator[dict[str, str]]:
        try:
            async with bridge.live(user) as queue:
                yield {"event": "ready", "data": json.dumps({"user_id": user})}
                while True:
                    item = await queue.get()
                    yield {"event": "live", "data": json.dumps(item)}
                    if item.get("lagged"):
                        return
        except ThreadlogError as exc:
            yield {"event": "refused", "data": json.dumps(exc.to_dict())}

    return EventSourceResponse(events(), ping=15)


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


def routes() -> list[Route | Mount]:
    u, t = "/api/users/{user}", "/api/users/{user}/threads/{thread}"
    return [
        Route("/", index),
        Route("/api/whoami", endpoint(whoami)),
        Route("/api/users", endpoint(users)),
        Route(f"{u}/threads", endpoint(threads), methods=["GET"]),
        Route(f"{u}/threads", endpoint(create_thread), methods=["POST"]),
        Route(f"{t}/messages", endpoint(messages)),
        Route(f"{t}/generate", endpoint(generate), methods=["POST"]),
        Route(f"{t}/approval", endpoint(approval), methods=["POST"]),
        Route(f"{t}/canvases", endpoint(canvases)),
        Route(f"{t}/context", endpoint(context), methods=["POST"]),
        Route(f"{u}/usage", endpoint(usage)),
        Route(f"{u}/workflows", endpoint(workflows)),
        Route(f"{u}/workflows/{{run}}/{{op}}", endpoint(workflow_action), methods=["POST"]),
        Route(f"{u}/live", live),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


def create_app(nats: NatsEndpoint | Bridge, *, agents: list[str] | None = None,
               default_user: str | None = None,
               allowed_hosts: list[str] | None = None) -> Starlette:
    """The playground app for a NATS endpoint (connected at startup, closed at shutdown)
    or an already started :class:`Bridge` (left open). ``agents`` are offered in the
    page's agent picker (any name can be typed); ``default_user`` is opened first;
    ``allowed_hosts``: host names besides loopback the page may be reached by."""
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if isinstance(nats, Bridge):
            app.state.bridge = nats
            yield
            return
        bridge = await Bridge(nats).start()
        app.state.bridge = bridge
        try:
            yield
        finally:
            await bridge.close()

    # Only requests naming this machine: a DNS-rebinding page (another site re-resolved
    # to 127.0.0.1) sends its own host name and is refused before any route runs.
    hosts = ["127.0.0.1", "localhost", "::1", *(allowed_hosts or [])]
    app = Starlette(routes=routes(), lifespan=lifespan,
                    middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts)])
    app.state.agents = agents or []
    app.state.default_user = default_user
    return app

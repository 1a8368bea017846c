"""Import references of tools, so a generation queued with call-level or thread-level
tools can be resumed by another process (``handlers.agents.durable``).

A tool made with ``@tool`` at module level (``mypkg.tools.search``) has the reference
``"mypkg.tools:search"`` (``module:qualname``, as uvicorn's import strings), derived from
its handler's ``__module__`` and ``__qualname__``, or failing that found among its
module's globals (``search_tool = Tool(...)``). A queued generation whose extra tools
(those that are not the agent's own) all have references carries them in the queue
message's :data:`TOOLS_HEADER` (JSON ``[{"name", "ref"}]``); if one has none, the message
is marked :data:`PROCESS_BOUND_HEADER` (the names): only its own process can run it
(:func:`tool_headers`). :func:`not_run` is the stand-in that answers an error for the
tool calls of such a generation once its process is gone (none runs again).

Guarantees
- :func:`tool_ref` gives a reference only if, in this process, walking the loaded module
  ``sys.modules[module]`` along the qualname gives back that very ``Tool`` object (same
  name): never for closures or tools made in a function (``<locals>``), lambdas, tools of
  ``__main__`` (another process's ``__main__`` is another program) or of a module no longer
  in ``sys.modules``. It imports nothing.
- :func:`resolve_ref` (the worker's side) returns only a :class:`Tool` instance whose name
  is the one the message gives; anything else raises :class:`ToolRefError`. Only the
  generation queue's worker calls it, on headers of ``gen.>`` messages, which only the
  service role may publish (``threadlog.nats_auth``): never on a user's command.

Failure modes: :func:`resolve_ref` and :func:`carried_tools` raise
:class:`ToolRefError` (a malformed reference or header, an import error - any exception
the module raises while importing -, a missing attribute, not a ``Tool``, another
name); the generation then must not run in this process (``handlers.agents.generation``
answers ``unavailable``: the queue offers it again later, to any worker). Importing a
module runs its top-level code, as any import does.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from handlers.llm.tools import Tool

TOOLS_HEADER = "Threadlog-Tools"
"""JSON list of ``{"name": <tool name>, "ref": "<module>:<qualname>"}``: the generation's
tools that are not its agent's own (call-level and thread-level, the winners by name)."""
PROCESS_BOUND_HEADER = "Threadlog-Process-Bound"
"""Comma-separated names of the generation's extra tools without a reference: no other
process can run the generation (its owner's death fails it: ``worker_lost``)."""

_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_REF = re.compile(rf"^({_DOTTED}):({_DOTTED})$")
MAX_REFS = 200
"""Most references one message may carry (a longer header is malformed)."""


class ToolRefError(Exception):
    """A tool reference that does not resolve to its ``Tool`` in this process."""


def tool_ref(t: Tool[Any]) -> str | None:
    """``"module:qualname"`` of ``t`` if that resolves to ``t`` itself in this process's
    loaded modules (see the module), else ``None``. Imports nothing."""
    handler = getattr(t, "handler", None)
    module_name = getattr(handler, "__module__", None)
    if not isinstance(module_name, str) or module_name == "__main__":
        return None
    module = sys.modules.get(module_name)
    if module is None:
        return None
    qualname = getattr(handler, "__qualname__", None)
    if isinstance(qualname, str) and _REF.match(f"{module_name}:{qualname}") \
            and _walk(module, qualname) is t:
        return f"{module_name}:{qualname}"
    for attr, value in list(vars(module).items()):  # e.g. ``x = Tool(...)`` or ``tool(f)``
        if value is t and _REF.match(f"{module_name}:{attr}"):
            return f"{module_name}:{attr}"
    return None


def _walk(obj: Any, qualname: str) -> Any:
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def resolve_ref(ref: str, name: str) -> Tool[Any]:
    """The ``Tool`` named ``name`` at ``ref`` (imported if need be); :class:`ToolRefError`
    otherwise (see the module)."""
    m = _REF.match(ref) if isinstance(ref, str) else None
    if m is None:
        raise ToolRefError(f"malformed tool reference {ref!r}")
    try:
        module = importlib.import_module(m.group(1))
    except Exception as exc:  # any error of the module's own code while importing
        raise ToolRefError(f"cannot import {m.group(1)!r} for tool {name!r}: "
                           f"{type(exc).__name__}: {exc}") from exc
    found = _walk(module, m.group(2))
    if not isinstance(found, Tool):
        raise ToolRefError(f"{ref!r} is not a Tool in this process")
    if found.name != name:
        raise ToolRefError(f"{ref!r} is the tool {found.name!r}, not {name!r}")
    return found


def queue_headers(extra: Iterable[Tool[Any]]) -> dict[str, str]:
    """The queue message headers of a generation whose tools beyond its agent's own are
    ``extra``: none without extra tools; :data:`PROCESS_BOUND_HEADER` if one has no
    reference, else :data:`TOOLS_HEADER`."""
    refs: list[dict[str, str]] = []
    unbound: list[str] = []
    for t in extra:
        ref = tool_ref(t)
        if ref is None:
            unbound.append(t.name)
        else:
            refs.append({"name": t.name, "ref": ref})
    if unbound:
        return {PROCESS_BOUND_HEADER: ",".join(unbound)}
    if refs:
        return {TOOLS_HEADER: json.dumps(refs, separators=(",", ":"))}
    return {}


def tool_headers(agent_tools: Iterable[Tool[Any]], tools: Iterable[Tool[Any]]
                 ) -> dict[str, str]:
    """The queue message headers (:func:`queue_headers`) of a generation whose resolved
    tool set is ``tools``: those that are not among ``agent_tools`` (the same objects)
    are named. For ``Generator.generate``'s and an approval continuation's ``enqueue``."""
    own = {id(t) for t in agent_tools}
    return queue_headers(t for t in tools if id(t) not in own)


def process_bound(headers: Mapping[str, str] | None) -> list[str] | None:
    """The names of the tools that existed only in the generation's own process, if its
    message is process-bound; else ``None``."""
    value = (headers or {}).get(PROCESS_BOUND_HEADER)
    if value is None:
        return None
    return [n for n in value.split(",") if n] or ["(unnamed)"]


def carried_tools(headers: Mapping[str, str] | None) -> list[Tool[Any]]:
    """The tools a queue message carries (:data:`TOOLS_HEADER`), resolved in this
    process, in the message's order; ``[]`` without the header. Raises
    :class:`ToolRefError` if the header is malformed or one reference does not resolve:
    the message may come from a newer version, or a process that had other modules."""
    value = (headers or {}).get(TOOLS_HEADER)
    if value is None:
        return []
    try:
        entries = json.loads(value)
    except ValueError as exc:
        raise ToolRefError(f"malformed {TOOLS_HEADER} header: {exc}") from exc
    if not isinstance(entries, list) or len(entries) > MAX_REFS or not all(
            isinstance(e, dict) and isinstance(e.get("name"), str)
            and isinstance(e.get("ref"), str) for e in entries):
        raise ToolRefError(f"malformed {TOOLS_HEADER} header")
    return [resolve_ref(e["ref"], e["name"]) for e in entries]


class WorkerLost(Exception):
    """The result of a tool call not run: its tool existed only in a process that died."""


class _AnyArgs(BaseModel):
    model_config = ConfigDict(extra="allow")


def not_run(name: str, why: str) -> Tool[Any]:
    """A stand-in for the tool ``name`` that runs nothing: every call of it answers an
    error result (``WorkerLost: <why>``), whatever its arguments."""
    def refuse(ctx: Any, args: _AnyArgs) -> None:
        raise WorkerLost(why)

    return Tool(name=name, description="", args_model=_AnyArgs, handler=refuse, timeout=None)

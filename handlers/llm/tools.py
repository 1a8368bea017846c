"""Tools: definition (``Tool``, ``@tool``), the context they receive, and resolution.

A tool has a name, a description, a pydantic argument model (its JSON schema, field
descriptions included, is what the model sees, in OpenAI ``tools`` format), an async handler
``(ctx: ToolContext[CtxT], args: ArgsModel) -> Any``, ``needs_approval`` (the orchestration
pauses for a human decision before running it) and a ``timeout`` in seconds.

Running a tool is ``tool_execution.execute_tool``: it never raises for tool problems.
"""

from __future__ import annotations

import copy
import inspect
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, get_type_hints, overload

from pydantic import BaseModel

CtxT = TypeVar("CtxT")
ArgsT = TypeVar("ArgsT", bound=BaseModel)

DEFAULT_TOOL_TIMEOUT = 30.0


@dataclass(frozen=True, kw_only=True)
class ToolContext(Generic[CtxT]):
    """What a tool handler knows about the generation that called it.

    ``client`` is the command/query client of the handlers app (typed ``Any`` here: this
    package does not depend on it). ``custom`` is the agent's typed custom context.
    ``tool_call_id`` identifies the call being executed."""

    agent_name: str
    custom: CtxT
    user_id: str | None = None
    thread_id: str | None = None
    prompt_message_id: str | None = None
    message_id: str | None = None
    tool_call_id: str | None = None
    client: Any = None


_SCHEMAS: weakref.WeakKeyDictionary[type[BaseModel], dict[str, Any]] = \
    weakref.WeakKeyDictionary()
"""Argument schemas by model class (a class redefined later is a new key)."""

ToolHandler = Callable[[ToolContext[Any], Any], Awaitable[Any] | Any]


@dataclass(frozen=True)
class Tool(Generic[ArgsT]):
    """A tool the model may call. ``handler`` may be async (usual) or sync."""

    name: str
    description: str
    args_model: type[ArgsT]
    handler: Callable[[ToolContext[Any], ArgsT], Awaitable[Any] | Any]
    needs_approval: bool = False
    timeout: float | None = DEFAULT_TOOL_TIMEOUT

    def parameters_schema(self) -> dict[str, Any]:
        """The JSON schema of the arguments (pydantic's, without the top-level title)."""
        cached = _SCHEMAS.get(self.args_model)
        if cached is None:  # pydantic builds it anew each time (~0.5 ms): once per model
            cached = self.args_model.model_json_schema()
            cached.pop("title", None)
            cached.setdefault("properties", {})
            _SCHEMAS[self.args_model] = cached
        return copy.deepcopy(cached)  # callers (and litellm) may change their copy

    def openai_schema(self) -> dict[str, Any]:
        """The tool in OpenAI ``tools`` format, as litellm expects it."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description,
                             "parameters": self.parameters_schema()}}


def _args_model_of(fn: Callable[..., Any]) -> type[BaseModel]:
    params = list(inspect.signature(fn).parameters.values())
    if len(params) != 2:
        raise TypeError(f"tool {fn.__name__}: handler must take (ctx, args), got {len(params)} "
                        "parameters")
    hints = get_type_hints(fn)
    model = hints.get(params[1].name)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"tool {fn.__name__}: annotate the second parameter with a pydantic "
                        "model (the tool's arguments)")
    return model


@overload
def tool(fn: Callable[[ToolContext[Any], Any], Any], /) -> Tool[Any]: ...


@overload
def tool(*, name: str | None = None, description: str | None = None,
         needs_approval: bool = False, timeout: float | None = DEFAULT_TOOL_TIMEOUT,
         ) -> Callable[[Callable[[ToolContext[Any], Any], Any]], Tool[Any]]: ...


def tool(fn: Callable[[ToolContext[Any], Any], Any] | None = None, /, *,
         name: str | None = None, description: str | None = None,
         needs_approval: bool = False, timeout: float | None = DEFAULT_TOOL_TIMEOUT,
         ) -> Tool[Any] | Callable[[Callable[[ToolContext[Any], Any], Any]], Tool[Any]]:
    """Make a ``Tool`` of a handler ``async def f(ctx: ToolContext[...], args: Args)``.

    Use bare (``@tool``) or with options (``@tool(needs_approval=True)``). The name defaults
    to the function's, the description to its docstring, and the argument model is read
    from the second parameter's annotation (``TypeError`` if it is not a pydantic model).
    """

    def make(handler: Callable[[ToolContext[Any], Any], Any]) -> Tool[Any]:
        args_model = _args_model_of(handler)
        doc = inspect.getdoc(handler) or ""
        return Tool(name=name or handler.__name__, description=description or doc,
                    args_model=args_model, handler=handler, needs_approval=needs_approval,
                    timeout=timeout)

    return make(fn) if fn is not None else make


ToolSet = Iterable[Tool[Any]] | Mapping[str, Tool[Any]]


def _as_list(tools: ToolSet | None) -> list[Tool[Any]]:
    if tools is None:
        return []
    if isinstance(tools, Mapping):
        return list(tools.values())
    return list(tools)


def resolve_tools(*levels: ToolSet | None) -> dict[str, Tool[Any]]:
    """Merge tool sets by name, least specific first: ``resolve_tools(agent, thread, call)``.

    A later level's tool replaces an earlier one of the same name (call > thread > agent);
    ``None`` levels are skipped. The result keeps first-seen order of names."""
    merged: dict[str, Tool[Any]] = {}
    for level in levels:
        for t in _as_list(level):
            merged[t.name] = t
    return merged


def tool_schemas(tools: Iterable[Tool[Any] | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI ``tools`` entries; dicts already in that format pass through unchanged."""
    return [t.openai_schema() if isinstance(t, Tool) else dict(t) for t in tools]

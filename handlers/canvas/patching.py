"""Applying RFC 6902 patches to canvas documents (with ``jsonpatch``), copy-on-write.

Guarantees
- ``apply_patch`` never changes its input document. It copies the top level and the
  ``elements`` map shallowly and deep-copies only the elements the ops name; an op on
  anything but an element (``/elements`` itself, the root, a top-level field) copies the
  whole document. Element objects are therefore never mutated after they are stored, so
  a snapshot of a document is a shallow copy of its ``elements`` map and a snippet can
  hold references to elements.
- Ops apply in order, all or none. A failure raises the precise error (see
  ``handlers.canvas.errors``) with the op's index and path in ``details``.

Replay (folding edit events) uses the same function, so the state folded from the log
equals the state the edit was decided on.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import jsonpatch
import jsonpointer

from handlers.canvas.errors import InvalidPatch, PatchPathNotFound, PatchTestFailed, UnknownElement

OPS = {"add", "remove", "replace", "move", "copy", "test"}
NEEDS_VALUE = {"add", "replace", "test"}
NEEDS_FROM = {"move", "copy"}


@dataclass(frozen=True)
class Target:
    """What a JSON Pointer points at: an element (``element_id``) and its depth below
    ``/elements`` (1: the element itself, 2+: inside it), or ``None`` for structure."""

    element_id: str | None
    depth: int


def parse_pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"JSON Pointer {path!r} must start with '/'")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def target_of(path: str) -> Target:
    tokens = parse_pointer(path)
    if len(tokens) >= 2 and tokens[0] == "elements":
        return Target(tokens[1], len(tokens) - 1)
    return Target(None, 0)


def check_ops(ops: Any) -> list[dict[str, Any]]:
    """Validate the shape of an RFC 6902 patch; return a deep copy (ours to keep)."""
    if not isinstance(ops, list) or not ops:
        raise InvalidPatch("a patch is a non-empty list of operations")
    for i, op in enumerate(ops):
        where = {"op_index": i}
        if not isinstance(op, dict):
            raise InvalidPatch(f"op {i} is not an object", details=where)
        name = op.get("op")
        if name not in OPS:
            raise InvalidPatch(f"op {i}: unknown operation {name!r}",
                               details={**where, "op": str(name)})
        keys = {"path"} | ({"value"} if name in NEEDS_VALUE else set()) | (
            {"from"} if name in NEEDS_FROM else set())
        missing = sorted(k for k in keys if k not in op)
        if missing:
            raise InvalidPatch(f"op {i} ({name}) lacks {', '.join(missing)}",
                               details={**where, "missing": missing})
        for key in ("path", "from"):
            if key in op:
                if not isinstance(op[key], str):
                    raise InvalidPatch(f"op {i}: {key} must be a string", details=where)
                try:
                    parse_pointer(op[key])
                except ValueError as exc:
                    raise InvalidPatch(f"op {i}: {exc}", details=where) from None
    return copy.deepcopy(ops)


@dataclass
class PatchOutcome:
    document: dict[str, Any]
    touched: list[str]
    before: dict[str, Any]
    """Touched element id -> element before the patch (``None``: it did not exist)."""
    after: dict[str, Any]
    structural: bool
    """Whether an op addressed something other than an element."""


def apply_patch(document: dict[str, Any], ops: list[dict[str, Any]]) -> PatchOutcome:
    """Apply ``ops`` (already shape-checked by :func:`check_ops`) to ``document``."""
    old_elements: dict[str, Any] = document.get("elements", {})
    named: list[str] = []
    structural = False
    for op in ops:
        for key in ("path", "from"):
            if key in op:
                t = target_of(op[key])
                if t.element_id is None:
                    structural = True
                elif t.element_id not in named:
                    named.append(t.element_id)
    if structural:
        work: Any = copy.deepcopy(document)
    else:
        elements = dict(old_elements)
        for eid in named:
            if eid in elements:
                elements[eid] = copy.deepcopy(elements[eid])
        work = {**document, "elements": elements}
    for i, op in enumerate(ops):
        _precheck(work, op, i)
        try:
            work = jsonpatch.apply_patch(work, [op], in_place=True)
        except jsonpatch.JsonPatchTestFailed as exc:
            raise PatchTestFailed(f"op {i}: test failed at {op['path']!r}: {exc}",
                                  details={"op_index": i, "path": op["path"]}) from None
        except (jsonpatch.JsonPatchConflict, jsonpointer.JsonPointerException) as exc:
            raise PatchPathNotFound(f"op {i} ({op['op']}): path {op.get('path')!r} "
                                    f"cannot be applied: {exc}",
                                    details={"op_index": i, "path": op["path"]}) from None
        except jsonpatch.InvalidJsonPatch as exc:
            raise InvalidPatch(f"op {i}: {exc}", details={"op_index": i}) from None
    if not isinstance(work, dict) or not isinstance(work.get("elements", {}), dict):
        raise PatchPathNotFound("the patch must leave a document with an elements map",
                                details={})
    new_elements: dict[str, Any] = work.get("elements", {})
    candidates = (list(dict.fromkeys([*old_elements, *new_elements])) if structural
                  else named)
    touched = [eid for eid in candidates
               if old_elements.get(eid) != new_elements.get(eid)]
    return PatchOutcome(work, touched,
                        {eid: old_elements.get(eid) for eid in touched},
                        {eid: new_elements.get(eid) for eid in touched}, structural)


def _precheck(work: dict[str, Any], op: dict[str, Any], i: int) -> None:
    """An op inside (or removing, replacing, testing, moving) an element that does not
    exist is ``unknown_element``: clearer than a pointer error."""
    elements = work.get("elements", {}) if isinstance(work, dict) else {}
    for key in ("path", "from"):
        if key not in op:
            continue
        t = target_of(op[key])
        if t.element_id is None or not isinstance(elements, dict):
            continue
        creating = key == "path" and t.depth == 1 and op["op"] in ("add", "move", "copy")
        if not creating and t.element_id not in elements:
            raise UnknownElement(f"op {i} ({op['op']}): no element {t.element_id!r}",
                                 details={"op_index": i, "element_id": t.element_id})


def inverse_ops(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """The ops undoing an edit, given its snippet, guarded by ``test`` ops.

    Per element and per top-level property: only the properties the edit changed are
    restored, each after a ``test`` that it still has the value the edit gave it. So a
    revert of a resize survives a later recolour of the same element, and a revert of
    something changed again since fails its test (nothing is silently lost).
    """
    ops: list[dict[str, Any]] = []
    for eid, old in before.items():
        new = after.get(eid)
        base = f"/elements/{eid}"
        if old is None:
            ops += [{"op": "test", "path": base, "value": new}, {"op": "remove", "path": base}]
        elif new is None:
            ops.append({"op": "add", "path": base, "value": old})
        else:
            for key in dict.fromkeys([*old, *new]):
                path = f"{base}/{_escape(key)}"
                if key not in new:
                    ops.append({"op": "add", "path": path, "value": old[key]})
                elif key not in old:
                    ops += [{"op": "test", "path": path, "value": new[key]},
                            {"op": "remove", "path": path}]
                elif old[key] != new[key]:
                    ops += [{"op": "test", "path": path, "value": new[key]},
                            {"op": "replace", "path": path, "value": old[key]}]
    return ops


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")

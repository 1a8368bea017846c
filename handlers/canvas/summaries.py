"""Short edit summaries, generated from an edit's snippet when the author gives none.

One clause per touched element: ``resized rect header "Quarterly plan"``; clauses joined
with ``; ``, at most :data:`MAX_SUMMARY` characters. Deterministic: the same snippet
always gives the same summary, so a re-sent command records the same event.
"""

from __future__ import annotations

from typing import Any

MAX_SUMMARY = 300
_VERBS = [({"x", "y"}, "moved"), ({"width", "height"}, "resized"), ({"text"}, "edited text of"),
          ({"style"}, "restyled"), ({"rotation"}, "rotated"), ({"z"}, "reordered")]


def _label(eid: str, element: dict[str, Any] | None) -> str:
    if not isinstance(element, dict):
        return eid
    kind = element.get("type")
    text = element.get("text")
    label = f"{kind} {eid}" if isinstance(kind, str) else eid
    if isinstance(text, str) and text.strip():
        excerpt = " ".join(text.split())[:40]
        label += f' "{excerpt}"'
    return label


def _clause(eid: str, old: Any, new: Any) -> str:
    if old is None:
        return f"added {_label(eid, new)}"
    if new is None:
        return f"removed {_label(eid, old)}"
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return f"changed {eid}"
    changed = {k for k in {*old, *new} if old.get(k) != new.get(k)}
    verbs = [verb for keys, verb in _VERBS if changed & keys]
    rest = sorted(changed - set().union(*(keys for keys, _ in _VERBS)))
    if rest:
        verbs.append("changed " + ", ".join(rest) + " of")
    return f"{' and '.join(verbs) or 'touched'} {_label(eid, new)}"


def summarize(touched: list[str], before: dict[str, Any], after: dict[str, Any]) -> str:
    if not touched:
        return "no element changed"
    text = "; ".join(_clause(eid, before.get(eid), after.get(eid)) for eid in touched)
    return text if len(text) <= MAX_SUMMARY else text[:MAX_SUMMARY - 1] + "…"

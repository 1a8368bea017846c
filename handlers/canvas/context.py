"""Reference snippets of earlier canvas edits for an agent's context.

``reference_snippets`` picks, from one canvas's in-memory :class:`EditIndex`:

1. edits that touched elements the command names (``selection``): with the rule
   ``latest_per_element`` the newest ``per_element`` per element, with ``all`` every one
   (newest first), with ``none`` nothing;
2. edits whose search text (summary, ids, element types and texts) matches the prompt,
   BM25, the best ``text_matches``;
3. when a query vector is given (an embedding model is set), the ``vector_matches``
   nearest among the last ``vector_window`` edits that have vectors;
4. the ``recent`` most recent edits.

Candidates are taken in that priority order while the estimated tokens (characters / 4
of the formatted line) fit ``token_budget``; the result is in version order. Cost:
O(selection + postings of the prompt's informative tokens + recent), independent of the
canvas's length but for BM25's posting lists, which skip tokens present in more than half
the edits. Pure: no I/O (``canvas_context_messages`` does the I/O around it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from handlers.canvas.edit_index import EditRecord
from handlers.canvas.state import CanvasState

SelectionRule = Literal["latest_per_element", "all", "none"]


@dataclass(frozen=True)
class SnippetOptions:
    recent: int = 5
    selection_rule: SelectionRule = "latest_per_element"
    per_element: int = 3
    text_matches: int = 3
    vector_matches: int = 3
    vector_window: int = 2_000
    token_budget: int = 1_500
    max_snippet_chars: int = 600


@dataclass(frozen=True)
class Snippet:
    canvas_id: str
    version: int
    summary: str
    touched: tuple[str, ...]
    author: str
    author_kind: str
    message_id: str | None
    before: dict[str, Any]
    after: dict[str, Any]
    reasons: tuple[str, ...] = field(default=())

    def line(self, max_chars: int) -> str:
        change = json.dumps({"before": self.before, "after": self.after},
                            separators=(",", ":"), default=str)
        if len(change) > max_chars:
            change = change[:max_chars - 1] + "…"
        return (f"- v{self.version} by {self.author_kind} {self.author}: {self.summary} "
                f"[elements: {', '.join(self.touched)}] {change}")


def reference_snippets(state: CanvasState, prompt_text: str = "",
                       selection: Sequence[str] = (), options: SnippetOptions | None = None,
                       query_vector: list[float] | None = None) -> list[Snippet]:
    """The edits of ``state``'s canvas to show the model (see the module docstring)."""
    opts = options or SnippetOptions()
    index = state.index
    picked: dict[int, list[str]] = {}

    def take(versions: Iterable[int], reason: str) -> None:
        for v in versions:
            picked.setdefault(v, []).append(reason)

    if opts.selection_rule != "none":
        for eid in selection:
            versions = index.by_element.get(eid, [])
            chosen = versions[::-1] if opts.selection_rule == "all" \
                else versions[:-opts.per_element - 1:-1] if opts.per_element > 0 else []
            take(chosen, f"selected:{eid}")
    if prompt_text and opts.text_matches > 0:
        take((v for v, _ in index.search(prompt_text, opts.text_matches)), "text")
    if query_vector is not None and opts.vector_matches > 0:
        take((v for v, _ in index.nearest(query_vector, opts.vector_matches,
                                          opts.vector_window)), "vector")
    take(range(len(index), max(0, len(index) - opts.recent), -1), "recent")

    out: list[Snippet] = []
    used = 0
    for version, reasons in picked.items():  # insertion order = priority order
        rec = index.records[version - 1]
        snip = _snippet(state.canvas_id, rec, reasons)
        cost = math.ceil(len(snip.line(opts.max_snippet_chars)) / 4)
        if used + cost > opts.token_budget:
            continue
        used += cost
        out.append(snip)
    out.sort(key=lambda s: s.version)
    return out


def _snippet(canvas_id: str, rec: EditRecord, reasons: list[str]) -> Snippet:
    return Snippet(canvas_id, rec.version, rec.summary, tuple(rec.touched), rec.author,
                   rec.author_kind, rec.message_id, rec.snippet.get("before", {}),
                   rec.snippet.get("after", {}), tuple(dict.fromkeys(reasons)))


def format_reference_message(state: CanvasState, snippets: Sequence[Snippet],
                             options: SnippetOptions | None = None) -> dict[str, Any]:
    """A system message naming the canvas, its version and the reference edits."""
    opts = options or SnippetOptions()
    title = f' "{state.title}"' if state.title else ""
    lines = [f"Canvas {state.canvas_id}{title} is at version {state.version} "
             f"with {len(state.document.get('elements', {}))} elements. Edit it with "
             f"base_version={state.version}."]
    if snippets:
        lines.append("Reference edits (oldest first):")
        lines += [s.line(opts.max_snippet_chars) for s in snippets]
    return {"role": "system", "content": "\n".join(lines)}


OnEmbedding = Callable[[Any], Awaitable[None]]
"""Called with each ``EmbeddingResult`` (to record its usage)."""


async def embed_missing(state: CanvasState, model: str, window: int,
                        on_embedding: OnEmbedding | None = None) -> None:
    """Embed the summaries of recent edits that have no vector yet (one call)."""
    from handlers.llm.embeddings import embed_texts

    missing = state.index.missing_vectors(window)
    if not missing:
        return
    result = await embed_texts(model, [r.search_text() for r in missing])
    if on_embedding is not None:
        await on_embedding(result)
    for rec, vec in zip(missing, result.vectors, strict=True):
        state.index.vectors[rec.version] = unit(vec)


def unit(vec: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vec))
    return [v / norm for v in vec] if norm else vec


async def canvas_context_messages(service: Any, thread_id: str, user_id: str,
                                  prompt_text: str = "", selection: Sequence[str] = (),
                                  options: SnippetOptions | None = None,
                                  embedding_model: str | None = None,
                                  on_embedding: OnEmbedding | None = None,
                                  prompt_vector: list[float] | None = None
                                  ) -> list[dict[str, Any]]:
    """One system message per canvas of the thread (none if it has no canvas).

    ``service`` is the ``CanvasService``. With ``embedding_model`` the recent edits and the
    prompt are embedded (``handlers.llm.embeddings``) and vector matches are added;
    ``prompt_vector``, the prompt's embedding by that model if already computed, saves
    the prompt's call."""
    from handlers.llm.embeddings import embed_texts

    opts = options or SnippetOptions()
    messages = []
    for cid in await service.directory.canvases_of(thread_id):
        state: CanvasState = await service.state_for(user_id, cid)
        qvec = None
        if embedding_model and prompt_text and opts.vector_matches > 0:
            await embed_missing(state, embedding_model, opts.vector_window, on_embedding)
            if prompt_vector is None:
                query = await embed_texts(embedding_model, [prompt_text])
                if on_embedding is not None:
                    await on_embedding(query)
                prompt_vector = query.vectors[0]
            qvec = unit(prompt_vector)
        snippets = reference_snippets(state, prompt_text, selection, opts, qvec)
        messages.append(format_reference_message(state, snippets, opts))
    return messages

"""The model's stream, as the user sees it: the prompt fitted into the model's window, its
thinking kept apart from its answer (never sent), the answer's tokens sent as a draft until
checked (each kept in the draft: the audit records what the user saw), a possible refusal
marker held back."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from . import prompt
from .llm import GenerationError, Outcome

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ingest.selectors import ChunkHit

    from .llm import LLM
    from .prompt import Passage, Turn
    from .storage import Draft

logger = logging.getLogger(__name__)

DRAFT_NOTICE = (
    "Draft: the model is still writing. This text is not an answer until it has been checked "
    "against the passages; the checked answer may replace it."
)


def stream_model(
    llm: LLM,
    draft: Draft,
    question: str,
    passages: list[Passage],
    relevant: list[ChunkHit],
    history: list[Turn],
) -> Iterator[dict[str, Any]]:
    """Forward the model's answer tokens when they are shown (draft.show_tokens), after a
    notice that they are a draft, each kept in draft.shown as it is sent; never its reasoning;
    hold back a possible NOT_IN_DOCUMENTS marker.

    The prompt is first fitted into the model's window: passages that do not fit are removed
    from `passages` and `relevant` (lowest-ranked first) and recorded in the draft. While a
    reasoning model thinks, a `thinking` event says so; `thought` gives how long when the answer
    starts; `reset` takes back text shown before it turned out to be reasoning (what was shown
    stays in draft.shown: the audit records what the user saw)."""
    marker = prompt.NOT_IN_DOCUMENTS
    pending: str | None = ""
    outcome = draft.outcome = Outcome()
    started = time.monotonic()
    thinking_since: float | None = None
    try:
        request = llm.prepare(question=question, passages=passages, history=history)
    except GenerationError as exc:
        logger.warning("prompt does not fit: %s", exc)
        draft.model_error = str(exc)
        draft.fallback_reason = f"The prompt does not fit the model ({exc}); showing an "
        draft.fallback_reason += "extractive answer."
        draft.backend = "extractive"
        return
    draft.fit = request.fit
    draft.dropped = [
        {"n": p.n, "chunk_id": h.chunk_id, "document": h.document_name, "score": h.score}
        for p, h in zip(passages, relevant, strict=True)
        if p.n in request.fit.dropped
    ]
    del passages[request.fit.kept :], relevant[request.fit.kept :]
    try:
        for piece in llm.stream(request, outcome):
            now = time.monotonic()
            draft.first_token_ms = draft.first_token_ms or int((now - started) * 1000) or 1
            if piece.kind == "retract":  # the text shown so far was the model's thinking
                draft.streamed.clear()
                pending = ""
                thinking_since = thinking_since or started
                yield {"type": "reset"}
                continue
            if piece.kind == "reasoning":
                draft.reasoning.append(piece.text)
                if thinking_since is None:
                    thinking_since = now
                    yield {"type": "thinking"}
                continue
            if thinking_since is not None and draft.reasoning_seconds is None:
                draft.reasoning_seconds = round(now - thinking_since, 2)
                yield {"type": "thought", "seconds": draft.reasoning_seconds}
            draft.answer_start_ms = draft.answer_start_ms or int((now - started) * 1000) or 1
            draft.streamed.append(piece.text)
            delta: str = piece.text
            if not draft.show_tokens:
                continue
            if pending is not None:
                pending += delta
                if marker.startswith(pending.strip()) and len(pending.strip()) < len(marker):
                    continue  # could still be the refusal marker: do not show it yet
                delta, pending = pending, None
            if not draft.shown:
                yield {"type": "draft", "notice": DRAFT_NOTICE}
            # Kept before it is handed on: the audit may hold a token the connection then
            # failed to deliver, but never misses one that was delivered.
            draft.shown.append(delta)
            yield {"type": "token", "text": delta}
    except GenerationError as exc:
        logger.warning("generation failed: %s", exc)
        draft.model_error = str(exc)
        draft.fallback_reason = f"The model server failed ({exc}); showing an extractive answer."
        draft.backend = "extractive"
        return
    finally:
        if thinking_since is not None and draft.reasoning_seconds is None:
            draft.reasoning_seconds = round(time.monotonic() - thinking_since, 2)
    draft.text = "".join(draft.streamed).strip()
    if not draft.text and "".join(draft.reasoning).strip():
        # A reasoning model that thought until its budget ran out, or stopped without answering.
        draft.fallback_reason = (
            f"The model used all {request.fit.max_tokens} tokens it may write (LLM_MAX_TOKENS) "
            "thinking and wrote no answer; showing an extractive answer."
            if outcome.finish_reason == "length"
            else "The model reasoned but wrote no answer; showing an extractive answer."
        )
        draft.backend = "extractive"
        return
    if draft.text.strip().strip(".") == marker:
        draft.refused = True

"""Storing an answer: the question, the answer, its citations and its audit entry, in one
transaction, so that no answer exists without the entry that records it.

A streamed answer is shown while the model writes, before it is checked and stored; so before
its first token `question_open` commits a `question.asked` entry (the question, the passages,
the user), and the answer's entry closes it: it names that entry and holds the text that was
streamed beside the final answer. When the answer cannot be stored, `answer_withdraw` closes
it as `question.withdrawn` if the database lets it (issue 19)."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction

from audit.append import audit_record
from audit.models import AuditEvent

from . import grounding, prompt
from .llm import max_tokens, stop_sequences
from .models import Answer, Citation, Question
from .reasoning import thinking_mode

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from audit.append import RequestMeta
    from ingest.models import Collection
    from ingest.selectors import ChunkHit

    from .fitting import Fit
    from .llm import Outcome
    from .prompt import Passage
    from .retrieval import Evidence


def generation_parameters(*, k: int) -> dict[str, Any]:
    """The settings that shaped an answer, recorded with it."""
    return {
        "k": k,
        "llm_backend": settings.LLM_BACKEND,
        "llm_model": settings.LLM_MODEL,
        "temperature": settings.LLM_TEMPERATURE,
        "max_tokens": max_tokens(settings.LLM_MODEL),
        "context_tokens_setting": settings.LLM_CONTEXT_TOKENS,
        "thinking": thinking_mode(settings.LLM_THINKING, settings.LLM_MODEL),
        "system_role": settings.LLM_SYSTEM_ROLE,
        "stop": stop_sequences(settings.LLM_BACKEND),
        "retrieval_candidates": settings.RETRIEVAL_CANDIDATES,
        "retrieval_rrf_k": settings.RETRIEVAL_RRF_K,
        "retrieval_min_similarity": settings.RETRIEVAL_MIN_SIMILARITY,
        "gate_min_similarity": settings.GATE_MIN_SIMILARITY,
        "gate_min_coverage": settings.GATE_MIN_COVERAGE,
        "gate_min_text_match": settings.GATE_MIN_TEXT_MATCH,
        "chunk_size": settings.CHUNK_SIZE,
        "chunk_overlap": settings.CHUNK_OVERLAP,
        "embedding_model": settings.EMBEDDING_MODEL or "sentence-transformers/all-MiniLM-L6-v2",
        "patient_answers": settings.PATIENT_ANSWERS,
    }


@dataclass
class Draft:
    """What one answer becomes while it is produced; stored once at the end."""

    text: str = ""
    backend: str = "extractive"
    model: str = ""
    refused: bool = False
    stopped: bool = False
    cited: set[int] = field(default_factory=set)
    fallback_reason: str = ""
    model_error: str = ""
    streamed: list[str] = field(default_factory=list)
    removed_citations: list[int] = field(default_factory=list)
    patient_scope: list[int] = field(default_factory=list)  # patients the question named
    # A patient's record answers list questions (allergies, current medications) line by line.
    max_sentences: int = 3
    extractive_question: str = ""
    evidence: Evidence | None = None  # the refusal gate's signals, kept in the audit entry
    withheld: str = ""  # why the answer was withheld (a patient answer citing another patient)
    # Whether the model's tokens are sent to the user as they come (a streamed ask of a user
    # who sees identifiers unredacted), and exactly what was sent: the draft, unchecked.
    show_tokens: bool = False
    shown: list[str] = field(default_factory=list)
    opening: AuditEvent | None = None  # the question.asked entry committed before them

    # A model call: how the prompt was fitted, what the server said, the model's reasoning
    # (never part of `text`), and when its first token and its answer's first token came.
    outcome: Outcome | None = None
    fit: Fit | None = None
    dropped: list[dict[str, object]] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    reasoning_seconds: float | None = None
    first_token_ms: int = 0
    answer_start_ms: int = 0


logger = logging.getLogger(__name__)

MODEL_REFUSED = "The model answered that the documents do not say; the refusal was shown instead."


def streamed_record(draft: Draft) -> dict[str, Any] | None:
    """What the user was shown while the model wrote, beside the answer they were given: the
    exact text sent, whether the checked answer replaced it (and why), or kept it with its
    citations or heading changed. None when nothing was shown before the answer."""
    if not draft.shown:
        return None
    text = "".join(draft.shown)
    # The model's answer gave way to the extractive answer, a refusal, or a withheld notice.
    replaced = draft.refused or draft.backend == "extractive"
    edited = not replaced and draft.text != text.strip()
    reason = ""
    if replaced:
        reason = draft.withheld or draft.fallback_reason or MODEL_REFUSED
    elif draft.stopped:
        reason = draft.fallback_reason
    elif edited:
        reason = "The checks kept the model's answer and changed only its citations or heading"
        if draft.removed_citations:
            removed = ", ".join(f"[{n}]" for n in draft.removed_citations)
            reason += f" (removed {removed}, which name no passage)"
        reason += "."
    return {"text": text, "replaced": replaced, "edited": edited, "reason": reason}


def opening_ref(draft: Draft) -> dict[str, Any] | None:
    if draft.opening is None:
        return None
    return {"id": draft.opening.pk, "payload_hash": draft.opening.payload_hash}


def answer_store(
    draft: Draft,
    user: User | None,
    collection: Collection,
    question: str,
    k: int,
    meta: RequestMeta | None,
    follows: Question | None,
    relevant: list[ChunkHit],
    passages: list[Passage],
    started: float,
) -> Answer:
    unsupported: list[dict[str, object]] = []
    if not draft.refused and draft.backend not in {"extractive", "record", "none"} and draft.text:
        unsupported = grounding.unsupported_sentences(
            draft.text, passages, threshold=settings.SUPPORT_THRESHOLD
        )
    latency_ms = int((time.monotonic() - started) * 1000)
    streamed = streamed_record(draft)
    with transaction.atomic():
        q = Question.objects.create(
            user=user if user is not None and user.is_authenticated else None,
            collection=collection,
            text=question,
            follows=follows,
        )
        answer = Answer.objects.create(
            question=q,
            text=draft.text,
            refused=draft.refused,
            stopped=draft.stopped,
            backend=draft.backend,
            model=draft.model,
            fallback_reason=draft.fallback_reason,
            latency_ms=latency_ms,
            unsupported=unsupported,
            removed_citations=draft.removed_citations,
        )
        citations = Citation.objects.bulk_create(
            [
                Citation(
                    answer=answer,
                    n=p.n,
                    chunk_id=h.chunk_id,
                    document_id=h.document_id,
                    document_name=h.document_name,
                    page=h.page,
                    heading=h.heading[:500],
                    start=h.start,
                    end=h.end,
                    text=h.text,
                    score=h.score,
                    cited=p.n in draft.cited,
                )
                for p, h in zip(passages, relevant, strict=True)
            ]
        )
        if draft.model_error:
            audit_record(
                event_type=AuditEvent.Type.MODEL_FAILED,
                actor=user,
                meta=meta,
                collection_id=collection.id,
                summary=f"Model failed: {draft.model_error}"[:300],
                payload={
                    "question_id": q.id,
                    "backend": settings.LLM_BACKEND,
                    "model": settings.LLM_MODEL,
                    "base_url": settings.LLM_BASE_URL,
                    "error": draft.model_error,
                },
            )
        answer.audit_event = audit_record(
            event_type=(
                AuditEvent.Type.QUESTION_REFUSED
                if draft.refused
                else AuditEvent.Type.QUESTION_ANSWERED
            ),
            actor=user,
            meta=meta,
            collection_id=collection.id,
            flagged=draft.refused
            or bool(unsupported)
            or bool(draft.removed_citations)
            or bool(draft.withheld)
            # The user watched a draft that is not the answer they were given.
            or bool(streamed and streamed["replaced"]),
            summary=question,
            payload={
                "question_id": q.id,
                "answer_id": answer.id,
                "follows_question_id": follows.id if follows else None,
                "collection": {"id": collection.id, "slug": collection.slug},
                "question": question,
                "answer": draft.text,
                "refused": draft.refused,
                "stopped": draft.stopped,
                "backend": draft.backend,
                "model": draft.model,
                "prompt_version": prompt.PROMPT_VERSION,
                "parameters": generation_parameters(k=k),
                "fallback_reason": draft.fallback_reason,
                "withheld": draft.withheld,
                # The question.asked entry committed before the first token, and the text
                # streamed to the user beside the answer (None when nothing was streamed).
                "opening": opening_ref(draft),
                "streamed": streamed,
                "unsupported_sentences": unsupported,
                "removed_citations": draft.removed_citations,
                "latency_ms": latency_ms,
                "model_call": _model_call(draft),
                # The model's thinking, kept apart from the answer it led to.
                "reasoning": _reasoning(draft),
                "evidence": (
                    {k: round(v, 4) for k, v in asdict(draft.evidence).items()}
                    if draft.evidence
                    else None
                ),
                # Accounting of access (issue 10): whose records the passages came from.
                "patient_ids": sorted({h.patient_id for h in relevant if h.patient_id}),
                "patients_named": draft.patient_scope,
                "passages": [
                    {
                        "n": c.n,
                        "chunk_id": c.chunk_id,
                        "document_id": c.document_id,
                        "document": c.document_name,
                        "document_sha256": h.document_sha256,
                        "page": c.page,
                        "heading": c.heading,
                        "start": c.start,
                        "end": c.end,
                        "score": c.score,
                        "similarity": h.similarity,
                        "text_rank": h.text_rank,
                        "cited": c.cited,
                        "text": c.text,
                        "text_sha256": hashlib.sha256(c.text.encode("utf-8")).hexdigest(),
                        "patient_id": h.patient_id,
                        "sources": list(h.sources),
                    }
                    for c, h in zip(citations, relevant, strict=True)
                ],
            },
        )
        # The receipt's leaf: found by key, not by searching a million payloads.
        answer.save(update_fields=["audit_event"])
    return answer


def _model_call(draft: Draft) -> dict[str, Any] | None:
    """What the server was sent and said: the prompt's fit into the window (passages dropped),
    how the instructions went, the model's exact name and revision as the server reports them,
    why it stopped, and when its first token and its answer's first token arrived."""
    if draft.outcome is None:
        return None
    outcome = draft.outcome
    return {
        **(draft.fit.as_dict() if draft.fit is not None else {}),
        "dropped_passages": draft.dropped,
        "instructions_as": outcome.system_as,
        "model_reported": outcome.model,
        "served_model": outcome.served,
        "system_fingerprint": outcome.system_fingerprint,
        "finish_reason": outcome.finish_reason,
        "first_token_ms": draft.first_token_ms or None,
        "answer_start_ms": draft.answer_start_ms or None,
    }


def _reasoning(draft: Draft) -> dict[str, Any] | None:
    if not draft.reasoning:
        return None
    text = "".join(draft.reasoning).strip()
    record: dict[str, Any] = {
        "chars": len(text),
        "seconds": draft.reasoning_seconds,
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
    }
    if settings.AUDIT_MODEL_REASONING:
        record["text"] = text
    return record

"""Writes for the assistant: answer a question, with its citations and audit entry."""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from ingest.models import Collection

from . import generation, patients
from .audit import RequestMeta, audit_record
from .generation import CITATION, GenerationError, Passage, content_words
from .models import Answer, AuditEvent, Citation, Feedback, Question
from .retrieval import Evidence, answerable, evidence, is_relevant, retrieve

logger = logging.getLogger(__name__)


def generation_parameters(*, k: int) -> dict[str, Any]:
    """The settings that shaped an answer, recorded with it."""
    return {
        "k": k,
        "llm_backend": settings.LLM_BACKEND,
        "llm_model": settings.LLM_MODEL,
        "temperature": settings.LLM_TEMPERATURE,
        "max_tokens": settings.LLM_MAX_TOKENS,
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


def refusal_text(collection: Collection) -> str:
    return f"The documents in {collection.name} do not answer this question."


def _ground(
    text: str, passages: list[Passage], removed: list[int] | None = None
) -> tuple[str, set[int]]:
    """Keep only citations naming a shown passage (the others are appended to `removed`);
    cite the passage an uncited answer quotes."""
    valid = {p.n for p in passages}
    cited: set[int] = set()

    def keep(match: re.Match[str]) -> str:
        n = int(match.group(1))
        if n in valid:
            cited.add(n)
            return match.group(0)
        if removed is not None:
            removed.append(n)
        return ""

    cleaned = re.sub(r"\s+([.,;])", r"\1", CITATION.sub(keep, text)).strip()
    if not cited and cleaned:
        # A short extractive answer from a base model rarely cites: find the passage it quotes.
        words = set(content_words(cleaned))
        if words:
            best = max(passages, key=lambda p: len(words.intersection(content_words(p.text))))
            share = len(words.intersection(content_words(best.text))) / len(words)
            if share >= 0.6:
                cited.add(best.n)
                cleaned = f"{cleaned.rstrip()} [{best.n}]"
    return cleaned, cited


def _usable(text: str, question: str) -> str:
    """Why a model answer cannot be shown, or "" when it can."""
    if not text.strip():
        return "the model returned an empty answer"
    if len(content_words(text)) == 0:
        return "the model's answer has no content"
    if " ".join(question.lower().split()) in " ".join(text.lower().split()):
        return "the model echoed the question"
    return ""


@dataclass
class _Draft:
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


def question_ask(
    *,
    user,
    collection: Collection,
    question: str,
    k: int,
    meta: RequestMeta | None = None,
    follows: Question | None = None,
) -> Answer:
    """Retrieve, generate (or refuse, or fall back to extractive), store and audit one answer.

    `collection` must already be one the user may read (see ingest.selectors.collection_list).
    """
    answer: Answer | None = None
    for event in question_ask_stream(
        user=user, collection=collection, question=question, k=k, meta=meta, follows=follows
    ):
        if event["type"] == "done":
            answer = event["answer"]
    assert answer is not None
    return answer


def question_ask_stream(
    *,
    user,
    collection: Collection,
    question: str,
    k: int,
    meta: RequestMeta | None = None,
    follows: Question | None = None,
) -> Iterator[dict[str, Any]]:
    """The same as question_ask, as events: `passages`, then `token`s while the model writes,
    then `done` with the stored Answer (after grounding checks and any fallback).

    Closing the generator early (the user pressed stop, or the connection dropped) stores and
    audits the partial answer marked as stopped.
    """
    started = time.monotonic()
    question = question.strip()
    history = []
    search_text = question
    if follows is not None and hasattr(follows, "answer"):
        history = [generation.Turn(question=follows.text, answer=follows.answer.text)]
        # A follow-up ("and what about renewal?") is searched together with the turn before.
        search_text = f"{follows.text} {question}"
    # Clinical records: a question naming a patient searches only that patient's documents;
    # one naming several gets a question back (assistant/patients.py).
    scope = patients.patient_scope(question=search_text, collection_ids=[collection.id])
    hits = []
    if not scope.ambiguous:
        hits = retrieve(
            question=patients.search_text(search_text) if scope.patients else search_text,
            collection_ids=[collection.id],
            k=k,
            document_ids=scope.document_ids,
        )
    # The refusal gate: without evidence in the passages, refuse before any model is called.
    # A question naming a patient is left to the patient path, which says what the records
    # do not show (patients.missing_topic).
    found = evidence(question=search_text, hits=hits)
    if scope.patient is None and not answerable(found):
        hits = []
    relevant = patients.one_patient([h for h in hits if is_relevant(h)])
    topic = ""
    if scope.patient is not None and relevant:
        relevant, topic = _patient_topic(
            question, scope, relevant, collection_id=collection.id, k=k
        )
    passages = [
        Passage(n=i, document_name=h.document_name, page=h.page, heading=h.heading, text=h.text)
        for i, h in enumerate(relevant, start=1)
    ]
    yield {"type": "passages", "passages": relevant}

    draft = _Draft(evidence=found)
    llm = generation.get_llm()
    draft.patient_scope = [p.patient_id for p in scope.patients]
    if scope.patient is not None:
        draft.max_sentences = 12
        # Every passage names the patient: their name says nothing about which line answers.
        draft.extractive_question = patients.without_name(search_text, scope.patient)
    try:
        if scope.ambiguous:
            draft.text, draft.backend, draft.refused = (
                patients.clarification_text(scope),
                "none",
                True,
            )
            draft.fallback_reason = "Several patients match; asked which one is meant."
        elif not passages:
            draft.text, draft.backend, draft.refused = refusal_text(collection), "none", True
        elif scope.patient is not None and topic:
            # What the question asks about is in none of the patient's passages: say so.
            draft.text = patients.not_shown_text(patient=scope.patient, topic=topic)
            draft.backend, draft.refused = "none", True
        else:
            quote_record = scope.patient is not None and settings.PATIENT_ANSWERS == "quote"
            if llm is not None and not quote_record:
                draft.backend, draft.model = llm.backend, llm.model
                yield from _stream_model(llm, draft, question, passages, history)
            _finish(draft, collection=collection, question=search_text, passages=passages)
    except GeneratorExit:
        draft.stopped = True
        draft.text = "".join(draft.streamed).strip()
        if passages:
            draft.text, draft.cited = _ground(draft.text, passages)
        draft.fallback_reason = "Stopped by the user before the answer was complete."
        _store(draft, user, collection, question, k, meta, follows, relevant, passages, started)
        raise
    answer = _store(
        draft, user, collection, question, k, meta, follows, relevant, passages, started
    )
    yield {"type": "done", "answer": answer}


def _patient_topic(question: str, scope, relevant: list, *, collection_id: int, k: int):
    """(passages, missing words). When the words naming what is asked about are not all in the
    passages, search the patient's records for those words alone (full text) and put what it
    finds first; the words still missing after that are what the records do not show."""
    patient = scope.patient
    texts = [h.text for h in relevant]
    topic = patients.missing_topic(question=question, patient=patient, texts=texts)
    if not topic:
        return relevant, ""
    found = retrieve(
        question=topic,
        collection_ids=[collection_id],
        k=k,
        document_ids=scope.document_ids,
        mode="text",
    )
    known = {h.chunk_id for h in relevant}
    extra = [h for h in found if h.chunk_id not in known and h.text_rank > 0][: max(1, k // 2)]
    if not extra:
        return relevant, topic
    relevant = extra + relevant[: max(0, k - len(extra))]
    texts = [h.text for h in relevant]
    return relevant, patients.missing_topic(question=question, patient=patient, texts=texts)


def _stream_model(llm, draft: _Draft, question, passages, history) -> Iterator[dict[str, Any]]:
    """Forward the model's tokens; hold back a possible NOT_IN_DOCUMENTS marker."""
    marker = generation.NOT_IN_DOCUMENTS
    pending = ""
    try:
        for delta in llm.stream(question=question, passages=passages, history=history):
            draft.streamed.append(delta)
            if pending is not None:
                pending += delta
                if marker.startswith(pending.strip()) and len(pending.strip()) < len(marker):
                    continue  # could still be the refusal marker: do not show it yet
                delta, pending = pending, None
            yield {"type": "token", "text": delta}
    except GenerationError as exc:
        logger.warning("generation failed: %s", exc)
        draft.model_error = str(exc)
        draft.fallback_reason = f"The model server failed ({exc}); showing an extractive answer."
        draft.backend = "extractive"
        return
    draft.text = "".join(draft.streamed).strip()
    if draft.text.strip().strip(".") == marker:
        draft.refused = True


def _finish(draft: _Draft, *, collection, question: str, passages: list[Passage]) -> None:
    """Grounding checks on the model's text, or the extractive answer in its place.

    `question` is what was searched for (a follow-up includes the turn before it)."""
    if draft.refused:
        draft.text = refusal_text(collection)
        return
    if draft.backend != "extractive":
        text, cited = _ground(draft.text, passages, draft.removed_citations)
        problem = _usable(text, question) or ("" if cited else "the answer cites no passage")
        invented = generation.unsupported_figures(text, [p.text for p in passages if p.n in cited])
        if not problem and invented:
            problem = f"it states {', '.join(invented)}, which the cited passages do not contain"
        if problem:
            draft.fallback_reason = f"The model's answer was not usable ({problem})."
            draft.backend = "extractive"
        else:
            draft.text, draft.cited = text, cited
            return
    draft.text, draft.cited = _ground(
        generation.extractive_answer(
            question=draft.extractive_question or question,
            passages=passages,
            max_sentences=draft.max_sentences,
        ),
        passages,
    )
    if not draft.text:
        draft.text, draft.refused = refusal_text(collection), True


def _store(
    draft: _Draft, user, collection, question, k, meta, follows, relevant, passages, started
):
    unsupported: list[dict[str, object]] = []
    if not draft.refused and draft.backend not in {"extractive", "none"} and draft.text:
        unsupported = generation.unsupported_sentences(
            draft.text, passages, threshold=settings.SUPPORT_THRESHOLD
        )
    latency_ms = int((time.monotonic() - started) * 1000)
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
            flagged=draft.refused or bool(unsupported) or bool(draft.removed_citations),
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
                "prompt_version": generation.PROMPT_VERSION,
                "parameters": generation_parameters(k=k),
                "fallback_reason": draft.fallback_reason,
                "unsupported_sentences": unsupported,
                "removed_citations": draft.removed_citations,
                "latency_ms": latency_ms,
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


def feedback_create(
    *, answer: Answer, user, helpful: bool, comment: str, meta: RequestMeta | None = None
) -> Feedback:
    with transaction.atomic():
        feedback = Feedback.objects.create(
            answer=answer, user=user, helpful=helpful, comment=comment.strip()[:2000]
        )
        audit_record(
            event_type=AuditEvent.Type.FEEDBACK,
            actor=user,
            meta=meta,
            collection_id=answer.question.collection_id,
            summary=f"{'Helpful' if helpful else 'Not helpful'}: {answer.question.text}",
            payload={
                "answer_id": answer.id,
                "question_id": answer.question_id,
                "helpful": helpful,
                "comment": feedback.comment,
            },
        )
    return feedback

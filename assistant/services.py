"""Answering a question, in the order it happens: scope (the patients or documents the
question names), retrieve, refuse without evidence, answer (the model, streamed, or the
extractive answer), check the answer against its passages, store it with its audit entry."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from django.conf import settings

from . import grounding, patient_answers, patients, prompt
from .llm import GenerationError, Outcome, get_llm
from .prompt import Passage, Turn
from .retrieval import answerable, evidence, is_relevant, retrieve
from .storage import Draft, answer_store

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator

    from django.contrib.auth.models import User

    from audit.append import RequestMeta
    from ingest.models import Collection
    from ingest.records import PatientMatch
    from ingest.selectors import ChunkHit

    from .llm import LLM
    from .models import Answer, Question
    from .patients import PatientScope

logger = logging.getLogger(__name__)


def refusal_text(collection: Collection) -> str:
    return f"The documents in {collection.name} do not answer this question."


def question_ask(
    *,
    user: User | None,
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
    user: User | None,
    collection: Collection,
    question: str,
    k: int,
    meta: RequestMeta | None = None,
    follows: Question | None = None,
) -> Generator[dict[str, Any], None, None]:
    """The same as question_ask, as events: `passages`, then `token`s while the model writes,
    then `done` with the stored Answer (after grounding checks and any fallback).

    Closing the generator early (the user pressed stop, or the connection dropped) stores and
    audits the partial answer marked as stopped.
    """
    started = time.monotonic()
    question = question.strip()
    history: list[Turn] = []
    search_text = question
    if follows is not None and hasattr(follows, "answer"):
        history = [prompt.Turn(question=follows.text, answer=follows.answer.text)]
        # A follow-up ("and what about renewal?") is searched together with the turn before.
        search_text = f"{follows.text} {question}"
    # Clinical records: a question naming a patient searches only that patient's documents;
    # one naming several gets a question back (assistant/patients.py).
    scope = patients.patient_scope(question=search_text, collection_ids=[collection.id])
    # A question about one patient in a category their records hold in sections is answered
    # from those sections (patient_answers.py); anything else is retrieved.
    record = (
        patient_answers.record_answer(patient=scope.patient, ask=scope.ask)
        if scope.patient is not None
        and scope.ask.recognised
        and settings.PATIENT_ANSWERS == "quote"
        else None
    )
    hits: list[ChunkHit] = []
    if record is None and not scope.asks_back:
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
    if record is not None:
        relevant = record.passages
    elif scope.patient is not None and relevant:
        relevant, topic = _patient_topic(
            question, scope, relevant, collection_id=collection.id, k=k
        )
    passages = [
        Passage(n=i, document_name=h.document_name, page=h.page, heading=h.heading, text=h.text)
        for i, h in enumerate(relevant, start=1)
    ]
    yield {"type": "passages", "passages": relevant}

    draft = Draft(evidence=found)
    llm = get_llm()
    draft.patient_scope = [p.patient_id for p in scope.patients]
    if scope.patient is not None:
        draft.max_sentences = 12
        # Every passage names the patient: their name says nothing about which line answers.
        draft.extractive_question = patients.without_name(search_text, scope.patient)
    try:
        if scope.asks_back:
            draft.text, draft.backend, draft.refused = (
                patients.clarification_text(scope),
                "none",
                True,
            )
            draft.fallback_reason = (
                "Several patients match; asked which one is meant."
                if scope.ambiguous
                else "The question is about a patient but names none; asked which one is meant."
            )
        elif record is not None:
            draft.text, draft.backend, draft.refused = record.text, "record", record.not_recorded
            draft.cited = {p.n for p in passages}
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
                yield from _stream_model(llm, draft, question, passages, relevant, history)
            _finish(draft, collection=collection, question=search_text, passages=passages)
        if scope.patient is not None:
            _for_the_patient(draft, scope.patient, relevant, passages)
    except GeneratorExit:
        draft.stopped = True
        draft.text = "".join(draft.streamed).strip()
        if passages:
            draft.text, draft.cited = grounding.attribute(draft.text, passages)
        draft.fallback_reason = "Stopped by the user before the answer was complete."
        answer_store(
            draft, user, collection, question, k, meta, follows, relevant, passages, started
        )
        raise
    answer = answer_store(
        draft, user, collection, question, k, meta, follows, relevant, passages, started
    )
    yield {"type": "done", "answer": answer}


def _for_the_patient(
    draft: Draft, patient: PatientMatch, relevant: list[ChunkHit], passages: list[Passage]
) -> None:
    """A patient answer says whose record it is, and cites only that patient's documents: one
    citing another patient's passage is withheld (and flagged in the audit)."""
    strangers = sorted(
        h.patient_id
        for h, p in zip(relevant, passages, strict=True)
        if p.n in draft.cited and h.patient_id is not None and h.patient_id != patient.patient_id
    )
    if strangers:
        draft.withheld = (
            f"A cited passage comes from another patient's record (patient {strangers[0]}); "
            "the answer was withheld."
        )
        draft.text = f"The answer about {patient_answers.patient_header(patient)} was withheld: "
        draft.text += "it cited another patient's record."
        draft.refused, draft.cited = True, set()
        draft.fallback_reason = draft.withheld
        return
    header = patient_answers.patient_header(patient)
    if not draft.refused and draft.text and not draft.text.startswith(patient.name):
        draft.text = f"{header}: {draft.text}"


def _patient_topic(
    question: str, scope: PatientScope, relevant: list[ChunkHit], *, collection_id: int, k: int
) -> tuple[list[ChunkHit], str]:
    """(passages, missing words). When the words naming what is asked about are not all in the
    passages, search the patient's records for those words alone (full text) and put what it
    finds first; the words still missing after that are what the records do not show."""
    patient = scope.patient
    assert patient is not None  # called only for a question naming one patient
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


def _stream_model(
    llm: LLM,
    draft: Draft,
    question: str,
    passages: list[Passage],
    relevant: list[ChunkHit],
    history: list[Turn],
) -> Iterator[dict[str, Any]]:
    """Forward the model's answer tokens, never its reasoning; hold back a possible
    NOT_IN_DOCUMENTS marker.

    The prompt is first fitted into the model's window: passages that do not fit are removed
    from `passages` and `relevant` (lowest-ranked first) and recorded in the draft. While a
    reasoning model thinks, a `thinking` event says so; `thought` gives how long when the answer
    starts; `reset` takes back text shown before it turned out to be reasoning."""
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


def _finish(
    draft: Draft, *, collection: Collection, question: str, passages: list[Passage]
) -> None:
    """Grounding checks on the model's text, or the extractive answer in its place.

    `question` is what was searched for (a follow-up includes the turn before it)."""
    if draft.refused:
        draft.text = refusal_text(collection)
        return
    if draft.backend != "extractive":
        text, cited = grounding.attribute(draft.text, passages, draft.removed_citations)
        problem = grounding.unusable_reason(text, question) or (
            "" if cited else "the answer cites no passage"
        )
        invented = grounding.unsupported_figures(text, [p.text for p in passages if p.n in cited])
        if not problem and invented:
            problem = f"it states {', '.join(invented)}, which the cited passages do not contain"
        if problem:
            draft.fallback_reason = f"The model's answer was not usable ({problem})."
            draft.backend = "extractive"
        else:
            draft.text, draft.cited = text, cited
            return
    draft.text, draft.cited = grounding.attribute(
        grounding.extractive_answer(
            question=draft.extractive_question or question,
            passages=passages,
            max_sentences=draft.max_sentences,
        ),
        passages,
    )
    if not draft.text:
        draft.text, draft.refused = refusal_text(collection), True

"""Answering a question, in the order it happens: scope (the patients or documents the
question names), retrieve, refuse without evidence, answer (the model, streamed, or the
extractive answer), check the answer against its passages, store it with its audit entry.

A streamed answer is shown as a draft before it is checked and stored: an audit entry is
committed before its first token, and an answer that cannot be stored is withdrawn, never
given (storage.py, issue 19)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from django.conf import settings

from . import grounding, patient_answers, patients, prompt
from .llm import get_llm
from .prompt import Passage, Turn
from .retrieval import answerable, evidence, is_relevant, retrieve
from .shown import answer_withdraw, question_open
from .storage import Draft, answer_store, streamed_record
from .streaming import stream_model

if TYPE_CHECKING:
    from collections.abc import Generator

    from django.contrib.auth.models import User

    from audit.append import RequestMeta
    from ingest.models import Collection
    from ingest.records import PatientMatch
    from ingest.selectors import ChunkHit

    from .models import Answer, Question
    from .patients import PatientScope

logger = logging.getLogger(__name__)

WITHDRAWN = (
    "Answer withdrawn: it could not be recorded in the audit trail, so it is not given. "
    "Disregard the draft that was shown, and ask again later."
)
NOT_RECORDED = "No answer: the question could not be recorded in the audit trail. Ask again later."


class AnswerNotRecorded(Exception):
    """The answer could not be stored with its audit entry, so it was not given."""


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
        user=user,
        collection=collection,
        question=question,
        k=k,
        meta=meta,
        follows=follows,
        stream_tokens=False,  # nothing is shown before the stored answer
    ):
        if event["type"] == "done":
            answer = event["answer"]
        elif event["type"] == "withdrawn":
            raise AnswerNotRecorded(event["message"]) from event["error"]
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
    stream_tokens: bool = True,
) -> Generator[dict[str, Any], None, None]:
    """The same as question_ask, as events: `passages`; with `stream_tokens`, while the model
    writes, `draft` (a notice that what follows is unchecked) and its `token`s; then `done`
    with the stored Answer (after grounding checks and any fallback) and what became of the
    draft, or `withdrawn` (a message) when the answer could not be stored, so is not given.

    Before the first token the `question.asked` entry is committed, and the answer's entry
    records the tokens sent (storage.py). Pass `stream_tokens=False` when they would not be
    shown (a redacted user): then nothing is shown before the stored answer.

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

    draft = Draft(evidence=found, show_tokens=stream_tokens)
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
                if draft.show_tokens:
                    # Committed before the model is asked, so before any token is shown.
                    question_open(
                        draft,
                        user=user,
                        collection=collection,
                        question=question,
                        k=k,
                        meta=meta,
                        follows=follows,
                        relevant=relevant,
                        passages=passages,
                    )
                yield from stream_model(llm, draft, question, passages, relevant, history)
            _finish(draft, collection=collection, question=search_text, passages=passages)
        if scope.patient is not None:
            _for_the_patient(draft, scope.patient, relevant, passages)
        answer = answer_store(
            draft, user, collection, question, k, meta, follows, relevant, passages, started
        )
    except GeneratorExit:
        draft.stopped = True
        draft.text = "".join(draft.streamed).strip()
        if passages:
            draft.text, draft.cited = grounding.attribute(draft.text, passages)
        draft.fallback_reason = "Stopped by the user before the answer was complete."
        try:
            answer_store(
                draft, user, collection, question, k, meta, follows, relevant, passages, started
            )
        except Exception as exc:
            logger.exception("the stopped answer to %r could not be stored", question)
            answer_withdraw(
                draft,
                user=user,
                collection=collection,
                question=question,
                meta=meta,
                relevant=relevant,
                passages=passages,
                error=exc,
            )
        raise
    except Exception as exc:
        # Not stored with its audit entry, so not given: what the user saw stays a draft.
        logger.exception("the answer to %r could not be stored; withdrawn", question)
        answer_withdraw(
            draft,
            user=user,
            collection=collection,
            question=question,
            meta=meta,
            relevant=relevant,
            passages=passages,
            error=exc,
        )
        message = WITHDRAWN if draft.shown else NOT_RECORDED
        yield {"type": "withdrawn", "message": message, "error": exc}
        return
    streamed = streamed_record(draft)
    outcome = {key: value for key, value in streamed.items() if key != "text"} if streamed else None
    yield {"type": "done", "answer": answer, "draft": outcome}


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

"""What the user was shown while an answer streamed (issue 19): the `question.asked` entry
committed before the first token (the question, the passages, the user), and the withdrawal
of an answer that could not be stored, so was never given. The answer's own entry is
storage.answer_store's."""

from __future__ import annotations

import hashlib
import logging
from contextlib import suppress
from typing import TYPE_CHECKING

from django import db
from django.db import connection

from audit.append import audit_record
from audit.models import AuditEvent

from . import prompt
from .storage import Draft, generation_parameters, opening_ref, streamed_record

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from audit.append import RequestMeta
    from ingest.models import Collection
    from ingest.selectors import ChunkHit

    from .models import Question
    from .prompt import Passage

logger = logging.getLogger(__name__)


def question_open(
    draft: Draft,
    *,
    user: User | None,
    collection: Collection,
    question: str,
    k: int,
    meta: RequestMeta | None,
    follows: Question | None,
    relevant: list[ChunkHit],
    passages: list[Passage],
) -> AuditEvent:
    """Commit the `question.asked` entry before any token is shown: who asked what, of which
    collection, and every passage given to the model (as in the answer's entry, without the
    `cited` flag no one knows yet). Appended on its own, so it is committed when this returns
    (when the caller holds no transaction: the streaming views hold none)."""
    draft.opening = audit_record(
        event_type=AuditEvent.Type.QUESTION_ASKED,
        actor=user,
        meta=meta,
        collection_id=collection.id,
        summary=question,
        payload={
            "question": question,
            "follows_question_id": follows.id if follows else None,
            "collection": {"id": collection.id, "slug": collection.slug},
            "backend": draft.backend,
            "model": draft.model,
            "prompt_version": prompt.PROMPT_VERSION,
            "parameters": generation_parameters(k=k),
            "patient_ids": sorted({h.patient_id for h in relevant if h.patient_id}),
            "patients_named": draft.patient_scope,
            "passages": [
                {
                    "n": p.n,
                    "chunk_id": h.chunk_id,
                    "document_id": h.document_id,
                    "document": h.document_name,
                    "document_sha256": h.document_sha256,
                    "page": h.page,
                    "heading": h.heading[:500],
                    "start": h.start,
                    "end": h.end,
                    "score": h.score,
                    "similarity": h.similarity,
                    "text_rank": h.text_rank,
                    "text": h.text,
                    "text_sha256": hashlib.sha256(h.text.encode("utf-8")).hexdigest(),
                    "patient_id": h.patient_id,
                    "sources": list(h.sources),
                }
                for p, h in zip(passages, relevant, strict=True)
            ],
        },
    )
    return draft.opening


def answer_withdraw(
    draft: Draft,
    *,
    user: User | None,
    collection: Collection,
    question: str,
    meta: RequestMeta | None,
    relevant: list[ChunkHit],
    passages: list[Passage],
    error: BaseException,
) -> AuditEvent | None:
    """The answer could not be stored, so it is not given: close the opening entry with a
    `question.withdrawn` entry holding what was shown, on a new session (the old one is
    likely what failed). Best effort: with the database still gone this records nothing and
    returns None, and the opening entry alone says a draft was shown and never answered.

    Inside a transaction the caller owns (tests), the session is not replaced."""
    if not connection.in_atomic_block:
        with suppress(db.Error):
            connection.close()
    try:
        return audit_record(
            event_type=AuditEvent.Type.QUESTION_WITHDRAWN,
            actor=user,
            meta=meta,
            collection_id=collection.id,
            flagged=True,
            summary=question,
            payload={
                "opening": opening_ref(draft),
                "question": question,
                "collection": {"id": collection.id, "slug": collection.slug},
                "stopped": draft.stopped,
                "streamed": streamed_record(draft),
                "error": f"{type(error).__name__}: {error}"[:500],
                # Erasing a document finds this entry by them (audit/erasure.py).
                "passages": [
                    {"n": p.n, "chunk_id": h.chunk_id, "document_id": h.document_id}
                    for p, h in zip(passages, relevant, strict=True)
                ],
            },
        )
    except Exception:
        logger.exception("the withdrawal of an answer to %r could not be recorded", question)
        return None

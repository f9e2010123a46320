"""Reads for the portal and the API: a user's questions, a conversation, an answer's entry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings

from audit.models import AuditEvent
from ingest.selectors import collection_list

from .models import Answer, Question

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.db.models import QuerySet


def default_k() -> int:
    return settings.RETRIEVAL_K


def question_list(*, user: User) -> QuerySet[Question]:
    """The user's own questions, in collections they may still read."""
    return (
        Question.objects.filter(user=user, collection__in=collection_list(user=user))
        .select_related("answer", "collection")
        .order_by("-created_at", "-id")
    )


def question_get(*, user: User, pk: int) -> Question:
    return question_list(user=user).get(pk=pk)


def conversation(*, question: Question) -> list[Question]:
    """The earlier turns this question follows, oldest first (at most 10)."""
    turns: list[Question] = []
    current = question.follows
    while current is not None and len(turns) < 10:
        turns.append(current)
        current = current.follows
    return list(reversed(turns))


def answer_event(answer: Answer) -> AuditEvent | None:
    """The `question.answered` / `question.refused` entry that records the answer."""
    if answer.audit_event_id is not None:
        return AuditEvent.objects.filter(pk=answer.audit_event_id).first()
    # Answers from before issue 9 carry no link: find the entry by its payload.
    return (
        AuditEvent.objects.filter(
            payload__answer_id=answer.id,
            event_type__in=[AuditEvent.Type.QUESTION_ANSWERED, AuditEvent.Type.QUESTION_REFUSED],
        )
        .order_by("id")
        .first()
    )

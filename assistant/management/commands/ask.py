"""Ask a question of a collection from the command line.

python manage.py ask "QUESTION" --collection SLUG [--user NAME] [--k N] [--json]
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ObjectDoesNotExist
from django.core.management.base import BaseCommand, CommandError

from assistant.selectors import default_k
from assistant.services import question_ask
from audit.models import AuditEvent
from ingest.models import Collection
from ingest.redaction import must_redact, redact
from ingest.selectors import collection_get

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.core.management.base import CommandParser


class Command(BaseCommand):
    help = "Answer a question from a collection's documents, with citations."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("question")
        parser.add_argument("--collection", required=True, metavar="SLUG")
        parser.add_argument("--user", metavar="NAME", help="ask as this user, with their grants")
        parser.add_argument("--k", type=int, default=None, help="passages to retrieve")
        parser.add_argument("--json", action="store_true")

    def handle(
        self,
        *args: Any,
        question: str,
        collection: str,
        user: str | None,
        k: int | None,
        json: bool,
        **options: Any,
    ) -> None:
        asker: User | None = None
        if user:
            try:
                asker = get_user_model().objects.get(username=user)
            except ObjectDoesNotExist as exc:
                raise CommandError(f"No user {user!r}") from exc
        try:
            target = (
                collection_get(user=asker, slug=collection)
                if asker is not None
                else Collection.objects.get(slug=collection)
            )
        except ObjectDoesNotExist as exc:
            raise CommandError(f"No collection {collection!r}") from exc
        if k is not None and not 1 <= k <= 50:
            raise CommandError("--k must be between 1 and 50")
        answer = question_ask(user=asker, collection=target, question=question, k=k or default_k())
        shown = redact if must_redact(asker) else str
        audit = AuditEvent.objects.filter(payload__answer_id=answer.id).order_by("-id").first()
        citations = [
            {
                "n": c.n,
                "document": c.document_name,
                "path": c.document.source_path if c.document else "",
                "page": c.page,
                "start": c.start,
                "end": c.end,
                "text": shown(c.text),
                "score": c.score,
                "cited": c.cited,
            }
            for c in answer.citations.select_related("document")
        ]
        if json:
            report = {
                "answer": shown(answer.text),
                "refused": answer.refused,
                "backend": answer.backend,
                "model": answer.model,
                "audit_id": audit.id if audit else None,
                "citations": citations,
            }
            self.stdout.write(_dumps(report))
            return
        self.stdout.write(shown(answer.text))
        if answer.fallback_reason:
            self.stdout.write(f"({answer.fallback_reason})")
        for c in citations:
            page = f", page {c['page']}" if c["page"] else ""
            self.stdout.write(f"[{c['n']}] {c['document']}{page}")


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, indent=2)

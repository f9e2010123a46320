"""Queue again the documents a stopped run left unfinished (queued, parsing or embedding)."""

from typing import Any

from django.core.management.base import BaseCommand

from ingest.services import document_requeue_unfinished


class Command(BaseCommand):
    help = "Re-enqueue documents whose ingestion was interrupted."

    def handle(self, *args: Any, **options: Any) -> None:
        count = document_requeue_unfinished()
        if count:
            self.stdout.write(f"[attest] re-queued {count} unfinished document(s)")

"""Re-embed the chunks whose vectors came from another embedding model.

    python manage.py reembed [--collection SLUG] [--batch-size N] [--check]

Run it after changing EMBEDDING_MODEL; it is safe to stop and run again.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from django.core.management.base import BaseCommand, CommandError

from ingest.embedding import get_embedder
from ingest.models import Chunk, Collection
from ingest.services import chunks_reembed

if TYPE_CHECKING:
    from django.core.management.base import CommandParser


class Command(BaseCommand):
    help = "Re-embed chunks whose stored model differs from the current embedding model."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--collection", metavar="SLUG")
        parser.add_argument("--batch-size", type=int, default=256)
        parser.add_argument(
            "--check", action="store_true", help="only count stale chunks; exit 1 if any"
        )

    def handle(
        self, *args: Any, collection: str | None, batch_size: int, check: bool, **options: Any
    ) -> None:
        target = None
        if collection:
            target = Collection.objects.filter(slug=collection).first()
            if target is None:
                raise CommandError(f"No collection {collection!r}.")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        name = get_embedder().name
        if check:
            stale = Chunk.objects.exclude(embedding_model=name)
            if target is not None:
                stale = stale.filter(collection=target)
            n = stale.count()
            self.stdout.write(f"{n} chunk(s) not embedded with {name}")
            if n:
                sys.exit(1)
            return

        def progress(done: int, total: int) -> None:
            filled = 30 * done // max(total, 1)
            self.stderr.write(f"[{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")

        n = chunks_reembed(batch_size=batch_size, collection=target, on_batch=progress)
        self.stdout.write(f"{n} chunk(s) re-embedded with {name}")

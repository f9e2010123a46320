"""Ingest files, folders or .zip archives into a collection.

    python manage.py ingest PATH... --collection SLUG [--create] [--sync] [--json]

By default documents are queued for the Celery workers and the command waits for them,
drawing a progress bar; --sync runs the same pipeline in this process (no broker needed),
embedding several documents' passages together.
"""

from __future__ import annotations

import getpass
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.core.management.base import BaseCommand, CommandError

from assistant.actions import UploadOutcome, collection_saved, documents_upload
from ingest.models import Collection, Document
from ingest.pipeline import documents_ingest
from ingest.services import collection_get_or_create

if TYPE_CHECKING:
    from collections.abc import Iterator

    from django.core.management.base import CommandParser

    from ingest.pipeline import IngestResult

SKIP_NAMES = {".DS_Store", "Thumbs.db"}
BAR_WIDTH = 30
PENDING = {"queued", "parsing", "ocr", "embedding"}


def _files(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file() and p.name not in SKIP_NAMES and not p.name.startswith(".")
            )
        elif path.is_file():
            found.append(path)
        else:
            raise CommandError(f"No such file or folder: {raw}")
    return found


def progress_line(done: int, total: int, counts: Counter, elapsed: float) -> str:
    """One line of the terminal progress bar: `[####......] 12/40 30% ready 10, failed 2`."""
    filled = int(BAR_WIDTH * done / max(total, 1))
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    states = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()) if n)
    percent = 100 * done // max(total, 1)
    return f"[{bar}] {done}/{total} {percent}% {states} ({elapsed:.0f} s)"


class Command(BaseCommand):
    help = (
        "Ingest files, folders or .zip archives (PDF, DOCX, TXT, Markdown, HTML, EML, images) "
        "into a collection."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument("--collection", required=True, metavar="SLUG")
        parser.add_argument("--create", action="store_true", help="create the collection")
        parser.add_argument("--sync", action="store_true", help="ingest in this process")
        parser.add_argument("--json", action="store_true", help="print a JSON report")
        parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait")

    def handle(
        self,
        *args: Any,
        paths: list[str],
        collection: str,
        create: bool,
        sync: bool,
        json: bool,
        timeout: float,
        **options: Any,
    ) -> None:
        self.started = time.monotonic()
        self.quiet = json
        existed = Collection.objects.filter(slug=collection).exists()
        try:
            target = collection_get_or_create(slug=collection, create=create)
        except Collection.DoesNotExist as exc:
            raise CommandError(f"No collection {collection!r}; add --create to create it.") from exc
        actor = f"cli:{getpass.getuser()}"
        if not existed:
            collection_saved(collection=target, created=True, changes={}, actor_name=actor)
        rows: list[dict] = []
        files = _files(paths)  # a missing path is an error before anything is stored

        # Read one file at a time: a folder may not fit in memory.
        def inputs() -> Iterator[tuple[str, bytes, str]]:
            for path in files:
                try:
                    yield path.name, path.read_bytes(), str(path.resolve())
                except OSError as exc:
                    rows.append(_row_failed(path, f"Cannot read the file: {exc.strerror}"))

        outcomes = documents_upload(
            collection=target, files=inputs(), enqueue=not sync, actor_name=actor
        )
        by_document: dict[int, dict] = {}
        for outcome in outcomes:
            row = _row(outcome)
            rows.append(row)
            if outcome.document is not None and outcome.status not in {"duplicate", "failed"}:
                by_document[outcome.document.id] = row
        self.rows = rows
        self._draw()
        if sync:
            attachments: list[int] = []

            def finished(result: IngestResult) -> None:
                attachments.extend(result.attachment_ids)
                row = by_document.pop(result.document_id, None)
                if row is None:
                    return  # an e-mail attachment: ingested here, reported with its message
                row.update(
                    status=result.status,
                    pages=result.pages,
                    chunks=result.chunks,
                    error=result.error,
                )
                self._draw()

            pending = list(by_document)
            while pending:  # an e-mail's attachments are ingested here too
                documents_ingest(document_ids=pending, on_done=finished, enqueue_attachments=False)
                pending, attachments[:] = list(attachments), []
        else:
            self._wait(by_document, timeout)
        if not self.quiet and self.stderr.isatty():
            self.stderr.write("")  # end the progress line
        for row in rows:
            row.pop("id", None)
        report = {"documents": rows, "seconds": round(time.monotonic() - self.started, 3)}
        if json:
            self.stdout.write(_json_dumps(report))
        else:
            failed = sum(1 for r in rows if r["status"] == "failed")
            duplicates = sum(1 for r in rows if r["status"] == "duplicate")
            self.stdout.write(
                f"{len(rows)} file(s), {failed} failed, {duplicates} duplicate(s), "
                f"in {report['seconds']:.1f} s"
            )
            for r in rows:
                if r["status"] in {"failed", "duplicate"}:
                    self.stdout.write(f"  {r['status']}: {r['path']}: {r['error']}")

    def _wait(self, pending: dict[int, dict], timeout: float) -> None:
        """Poll the documents' states until none is pending, redrawing the bar."""
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise CommandError(f"{len(pending)} document(s) still pending after {timeout}s")
            time.sleep(0.5)
            for document in Document.objects.filter(id__in=list(pending)).defer("text"):
                pending[document.id].update(_row_document(document))
                if not document.is_pending:
                    del pending[document.id]
            self._draw()

    def _draw(self) -> None:
        if self.quiet:
            return
        counts = Counter(r["status"] for r in self.rows)
        done = sum(n for status, n in counts.items() if status not in PENDING)
        line = progress_line(done, len(self.rows), counts, time.monotonic() - self.started)
        # On a terminal the bar redraws in place; in a log file each update is its own line.
        if self.stderr.isatty():
            self.stderr.write("\r" + line, ending="")
        else:
            self.stderr.write(line)
        sys.stderr.flush()


def _row(outcome: UploadOutcome) -> dict:
    document = outcome.document
    return {
        "id": document.id if document is not None else None,
        "path": outcome.path,
        "name": outcome.name,
        "status": outcome.status,
        "pages": document.page_count if document is not None else None,
        "chunks": document.chunk_count if document is not None else 0,
        "error": outcome.error,
    }


def _row_document(document: Document) -> dict:
    return {
        "status": document.status,
        "pages": document.page_count,
        "chunks": document.chunk_count,
        "error": document.status_message if document.status == "failed" else "",
    }


def _row_failed(path: Path, error: str) -> dict:
    return {
        "id": None,
        "path": str(path),
        "name": path.name,
        "status": "failed",
        "pages": None,
        "chunks": 0,
        "error": error,
    }


def _json_dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, indent=2)

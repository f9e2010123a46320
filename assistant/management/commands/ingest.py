"""Ingest files or folders into a collection.

    python manage.py ingest PATH... --collection SLUG [--create] [--sync] [--json]

By default documents are queued for the Celery workers and the command waits for them;
--sync runs the same pipeline in this process (no broker needed).
"""

from __future__ import annotations

import getpass
import json
import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from assistant.admin_actions import collection_saved, document_upload
from ingest.models import Collection, Document
from ingest.services import collection_get_or_create, document_ingest

SKIP_NAMES = {".DS_Store", "Thumbs.db"}


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


class Command(BaseCommand):
    help = "Ingest files or folders (PDF, DOCX, TXT, Markdown, HTML, EML, images)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument("--collection", required=True, metavar="SLUG")
        parser.add_argument("--create", action="store_true", help="create the collection")
        parser.add_argument("--sync", action="store_true", help="ingest in this process")
        parser.add_argument("--json", action="store_true", help="print a JSON report")
        parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait")

    def handle(self, *args, paths, collection, create, sync, json: bool, timeout, **options):
        started = time.monotonic()
        existed = Collection.objects.filter(slug=collection).exists()
        try:
            target = collection_get_or_create(slug=collection, create=create)
        except Collection.DoesNotExist as exc:
            raise CommandError(f"No collection {collection!r}; add --create to create it.") from exc
        actor = f"cli:{getpass.getuser()}"
        if not existed:
            collection_saved(collection=target, created=True, changes={}, actor_name=actor)
        files = _files(paths)
        rows: list[dict] = []
        waiting: dict[int, dict] = {}
        for index, path in enumerate(files, start=1):
            try:
                data = path.read_bytes()
            except OSError as exc:
                rows.append(self._row(path, None, error=f"Cannot read the file: {exc.strerror}"))
                continue
            document, created = document_upload(
                collection=target,
                name=path.name,
                data=data,
                source_path=str(path.resolve()),
                enqueue=not sync,
                actor_name=actor,
            )
            row = self._row(path, document, duplicate=not created)
            rows.append(row)
            if created and sync:
                pending = [document.id]
                while pending:  # an e-mail's attachments are ingested here too
                    result = document_ingest(document_id=pending.pop(0), enqueue_attachments=False)
                    pending.extend(result.attachment_ids)
                document.refresh_from_db()
                row.update(self._row(path, document))
                self._progress(index, len(files), row, quiet=json)
            elif created and document.is_pending:
                waiting[document.id] = row
            else:
                self._progress(index, len(files), row, quiet=json)
        deadline = time.monotonic() + timeout
        while waiting:
            if time.monotonic() > deadline:
                raise CommandError(f"{len(waiting)} document(s) still pending after {timeout}s")
            time.sleep(0.5)
            for document in Document.objects.filter(id__in=list(waiting)).defer("text"):
                if not document.is_pending:
                    row = waiting.pop(document.id)
                    row.update(self._row(Path(row["path"]), document))
                    self._progress(len(rows) - len(waiting), len(files), row, quiet=json)
        report = {"documents": rows, "seconds": round(time.monotonic() - started, 3)}
        if json:
            self.stdout.write(_json_dumps(report))
        else:
            failed = sum(1 for r in rows if r["status"] == "failed")
            self.stdout.write(f"{len(rows)} file(s), {failed} failed, in {report['seconds']:.1f} s")

    @staticmethod
    def _row(path: Path, document: Document | None, *, duplicate: bool = False, error: str = ""):
        if document is None:
            return {"path": str(path), "name": path.name, "status": "failed", "pages": None,
                    "chunks": 0, "error": error}  # fmt: skip
        return {
            "path": str(path),
            "name": document.name,
            "status": "duplicate" if duplicate else document.status,
            "pages": document.page_count,
            "chunks": document.chunk_count,
            "error": document.status_message if document.status == "failed" else "",
        }

    def _progress(self, done: int, total: int, row: dict, *, quiet: bool) -> None:
        if quiet:
            return
        width = 30
        filled = int(width * done / max(total, 1))
        bar = "#" * filled + "." * (width - filled)
        line = f"[{bar}] {done}/{total} {row['name']}: {row['status']}"
        if row["error"]:
            line += f" ({row['error']})"
        self.stderr.write(line)
        sys.stderr.flush()


def _json_dumps(value) -> str:
    return json.dumps(value, indent=2)

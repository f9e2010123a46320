"""Audit trail operations for operators and compliance officers.

python manage.py audit verify [--json]
python manage.py audit export --format csv|jsonl [--user U] [--collection SLUG]
                              [--since YYYY-MM-DD] [--until YYYY-MM-DD] [--type EVENT]
                              [--q TEXT] [--flagged] [--patient ID] [--output FILE]
python manage.py audit purge             (tombstone entries past AUDIT_RETENTION_DAYS)
python manage.py audit snapshot-settings (record behaviour-relevant settings if changed)
"""

from __future__ import annotations

import getpass
import json
import sys

from django.core.management.base import BaseCommand, CommandError

from assistant import compliance
from assistant.audit import audit_purge_expired, audit_record, audit_verify
from assistant.models import AuditEvent
from assistant.settings_audit import settings_snapshot_record


class Command(BaseCommand):
    help = "Verify, export or purge the audit trail."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        verify = sub.add_parser("verify", help="recompute the hash chain")
        verify.add_argument("--json", action="store_true")
        export = sub.add_parser("export", help="export entries (the export is audited)")
        export.add_argument("--format", choices=["csv", "jsonl"], required=True)
        export.add_argument("--user", default="")
        export.add_argument("--collection", default="")
        export.add_argument("--since", default="")
        export.add_argument("--until", default="")
        export.add_argument("--type", default="")
        export.add_argument("--q", default="")
        export.add_argument("--flagged", action="store_true")
        export.add_argument(
            "--patient", type=int, default=None, help="questions drawing on this patient's records"
        )
        export.add_argument("--output", default="-", help="file to write (default stdout)")
        sub.add_parser("purge", help="tombstone entries older than AUDIT_RETENTION_DAYS")
        sub.add_parser("snapshot-settings", help="audit changed behaviour settings")

    def handle(self, *args, action: str, **options) -> None:
        match action:
            case "verify":
                self._verify(as_json=options["json"])
            case "export":
                self._export(options)
            case "purge":
                count = audit_purge_expired()
                self.stdout.write(f"{count} entries past retention replaced by tombstones")
            case "snapshot-settings":
                changed = settings_snapshot_record()
                if changed:
                    self.stdout.write("[attest] behaviour settings changed: recorded in the audit")

    def _verify(self, *, as_json: bool) -> None:
        report = audit_verify(record=True)
        if as_json:
            self.stdout.write(json.dumps(report.as_dict()))
        elif report.ok:
            self.stdout.write(
                f"OK: {report.entries} entries verified ({report.redacted} redacted) "
                f"in {report.seconds:.2f} s"
            )
        else:
            self.stdout.write(
                f"BROKEN at entry {report.first_broken_id}: {report.reason} "
                f"({report.entries} entries read)"
            )
        if not report.ok:
            raise SystemExit(1)

    def _export(self, options) -> None:
        params = {
            "user": options["user"],
            "collection": options["collection"],
            "since": options["since"],
            "until": options["until"],
            "type": options["type"],
            "q": options["q"],
            "flagged": "1" if options["flagged"] else "",
            "patient": str(options["patient"] or ""),
        }
        filters = compliance.AuditFilter.from_params(params)
        if options["since"] and filters.since is None or options["until"] and not filters.until:
            raise CommandError("--since and --until take dates as YYYY-MM-DD")
        count = compliance.audit_query(filters=filters).count()
        audit_record(
            event_type=AuditEvent.Type.AUDIT_EXPORTED,
            actor_username=f"cli:{getpass.getuser()}",
            summary=f"Exported {count} entries as {options['format']} (command line)",
            payload={"format": options["format"], "filters": filters.as_dict(), "entries": count},
        )
        out = (
            sys.stdout
            if options["output"] == "-"
            else open(  # noqa: SIM115
                options["output"], "w", encoding="utf-8", newline=""
            )
        )
        try:
            for line in compliance.export_lines(filters=filters, fmt=options["format"]):
                out.write(line)
        finally:
            if out is not sys.stdout:
                out.close()
        if out is not sys.stdout:
            self.stderr.write(f"{count} entries written to {options['output']}")

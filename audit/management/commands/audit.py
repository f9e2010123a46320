"""Audit trail operations for operators and compliance officers.

python manage.py audit verify [--json] [--checkpoints DIR --public-key FILE]
python manage.py audit keygen --out DIR  (Ed25519 key pair for signing checkpoints)
python manage.py audit checkpoint        (sign and write a checkpoint now)
python manage.py audit receipt AUDIT_ID [--record FILE]
python manage.py audit export --format csv|jsonl [--user U] [--collection SLUG]
                              [--since YYYY-MM-DD] [--until YYYY-MM-DD] [--type EVENT]
                              [--q TEXT] [--flagged] [--patient WHO] [--output FILE]
python manage.py audit purge             (tombstone entries past AUDIT_RETENTION_DAYS)
python manage.py audit snapshot-settings (record behaviour-relevant settings if changed)
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from audit import checkpoints, compliance, receipts
from audit.append import audit_record
from audit.checkpoint_verify import audit_verify_checkpoints
from audit.erasure import audit_purge_expired
from audit.models import AuditEvent
from audit.settings_snapshot import settings_snapshot_record
from audit.verify import audit_verify

if TYPE_CHECKING:
    from django.core.management.base import CommandParser


class Command(BaseCommand):
    help = "Verify, export or purge the audit trail."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        verify = sub.add_parser("verify", help="recompute the hash chain")
        verify.add_argument("--json", action="store_true")
        verify.add_argument("--checkpoints", default="", help="folder of signed checkpoints")
        verify.add_argument("--public-key", default="", help="the audit public key file")
        keygen = sub.add_parser("keygen", help="create the Ed25519 key that signs checkpoints")
        keygen.add_argument("--out", required=True, help="folder for the key pair")
        keygen.add_argument("--json", action="store_true")
        checkpoint = sub.add_parser("checkpoint", help="sign and write a checkpoint now")
        checkpoint.add_argument("--json", action="store_true")
        receipt = sub.add_parser("receipt", help="print an entry's receipt (JSON)")
        receipt.add_argument("audit_id", type=int)
        receipt.add_argument("--record", default="", help="also write the entry's record here")
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
            "--redact", action="store_true", help="replace identifiers (e-mail, phone, SSN, ...)"
        )
        export.add_argument(
            "--patient",
            default="",
            help="questions drawing on or naming this patient: id, name, MRN or birth date",
        )
        export.add_argument("--output", default="-", help="file to write (default stdout)")
        sub.add_parser("purge", help="tombstone entries older than AUDIT_RETENTION_DAYS")
        sub.add_parser("snapshot-settings", help="audit changed behaviour settings")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        match action:
            case "verify" if options["checkpoints"] or options["public_key"]:
                self._verify_checkpoints(options)
            case "verify":
                self._verify(as_json=options["json"])
            case "keygen":
                self._keygen(options)
            case "checkpoint":
                self._checkpoint(as_json=options["json"])
            case "receipt":
                self._receipt(options)
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

    def _verify_checkpoints(self, options: dict[str, Any]) -> None:
        if not options["checkpoints"] or not options["public_key"]:
            raise CommandError("--checkpoints and --public-key go together")
        directory = Path(options["checkpoints"])
        if not directory.is_dir():
            raise CommandError(f"{directory} is not a folder")
        try:
            public_key = checkpoints.load_public_key(options["public_key"])
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read the public key: {exc}") from exc
        report = audit_verify_checkpoints(directory=directory, public_key=public_key, record=True)
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict()))
        elif report.first_bad is None:  # report.ok
            self.stdout.write(
                f"OK: {report.entries} entries verified ({report.redacted} redacted) against "
                f"{report.checkpoints} signed checkpoint(s) in {report.seconds:.2f} s"
            )
        else:
            self.stdout.write(f"FAILED: {report.first_bad['reason']}")
            for problem in report.problems[1:]:
                self.stdout.write(f"  also: {problem['reason']}")
        if not report.ok:
            raise SystemExit(1)

    def _keygen(self, options: dict[str, Any]) -> None:
        try:
            key = checkpoints.key_generate(directory=Path(options["out"]))
        except FileExistsError as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "private_key_file": str(key.private_path),
                        "public_key_file": str(key.public_path),
                        "public_key": key.public_base64,
                        "key_id": key.key_id,
                    }
                )
            )
            return
        self.stdout.write(
            f"Private key: {key.private_path} (mode 0600; point AUDIT_SIGNING_KEY_FILE at it)\n"
            f"Public key:  {key.public_path}\n"
            f"Public key (base64): {key.public_base64}\n"
            f"Key id: {key.key_id}\n"
            "Give the public key file and the key id to the compliance office to keep."
        )

    def _checkpoint(self, *, as_json: bool) -> None:
        try:
            written = checkpoints.checkpoint_write(force=True)
        except checkpoints.SigningKeyMissing as exc:
            raise CommandError(str(exc)) from exc
        assert written is not None
        target = Path(settings.AUDIT_CHECKPOINT_DIR) / written.file_name
        if as_json:
            self.stdout.write(json.dumps({**written.signed_part(), "file": str(target)}))
        else:
            self.stdout.write(
                f"Checkpoint of {written.tree_size} entries, root {written.root_hash}, "
                f"signed by key {written.key_id}: {target}"
            )

    def _receipt(self, options: dict[str, Any]) -> None:
        event = AuditEvent.objects.filter(pk=options["audit_id"]).first()
        if event is None:
            raise CommandError(f"no audit entry {options['audit_id']}")
        try:
            receipt = receipts.receipt_for_event(event)
        except receipts.ReceiptUnavailable as exc:
            raise CommandError(exc.reason) from exc
        if options["record"]:
            try:
                Path(options["record"]).write_bytes(receipts.entry_record(event))
            except receipts.ReceiptUnavailable as exc:
                raise CommandError(exc.reason) from exc
        self.stdout.write(json.dumps(receipt, indent=1))

    def _export(self, options: dict[str, Any]) -> None:
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
        if (options["since"] and filters.since is None) or (options["until"] and not filters.until):
            raise CommandError("--since and --until take dates as YYYY-MM-DD")
        count = compliance.audit_query(filters=filters).count()
        audit_record(
            event_type=AuditEvent.Type.AUDIT_EXPORTED,
            actor_username=f"cli:{getpass.getuser()}",
            summary=f"Exported {count} entries as {options['format']} (command line)",
            payload={
                "format": options["format"],
                "filters": filters.as_dict(),
                "entries": count,
                "redact": options["redact"],
            },
        )
        out = (
            sys.stdout
            if options["output"] == "-"
            else Path(options["output"]).open("w", encoding="utf-8", newline="")  # noqa: SIM115
        )
        try:
            for line in compliance.export_lines(
                filters=filters, fmt=options["format"], redact=options["redact"]
            ):
                out.write(line)
        finally:
            if out is not sys.stdout:
                out.close()
        if out is not sys.stdout:
            self.stderr.write(f"{count} entries written to {options['output']}")

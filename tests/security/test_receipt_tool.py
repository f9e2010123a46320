"""Issue 19: tools/verify_receipt.py prints only what it verified. A receipt's `audit_id`,
`event_type` and `created_at` are covered by neither the signature nor the proof: whoever
hands over a receipt could change them, and the tool must not repeat them as checked."""

import json

import pytest

from audit import checkpoints, receipts
from audit.append import audit_record
from tests.audit.test_receipts import _run_tool, signing  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db


def test_forged_unsigned_fields_are_not_printed_as_verified(signing, tmp_path):  # noqa: F811
    audit_record(event_type="auth.login", payload={"username": "nora"}, summary="nora signed in")
    event = audit_record(event_type="audit.exported", payload={"entries": 3}, summary="export")
    checkpoints.checkpoint_write()
    receipt = receipts.receipt_for_event(event)
    receipt.update(audit_id=999999, event_type="forged.event", created_at="1999-01-01T00:00:00")
    receipt_file = tmp_path / "receipt.json"
    receipt_file.write_text(json.dumps(receipt))
    result = _run_tool(str(receipt_file), "--public-key", str(signing.public_path))
    # The signature and the proof hold: the forged fields are simply not part of what holds.
    assert result.returncode == 0, result.stdout + result.stderr
    assert "999999" not in result.stdout and "forged" not in result.stdout
    assert "1999-01-01" not in result.stdout
    assert f"is leaf {event.seq} of the audit tree" in result.stdout
    # With the record, the event type and time printed are the record's (covered by the hash).
    record_file = tmp_path / "record.json"
    record_file.write_bytes(receipts.entry_record(event))
    result = _run_tool(
        str(receipt_file), "--public-key", str(signing.public_path), "--payload", str(record_file)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "event audit.exported at" in result.stdout and "forged" not in result.stdout

"""Issue 9: the Merkle tree over the audit trail, signed checkpoints kept outside the database,
and receipts a regulator verifies offline. Against the real PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from assistant import selectors
from audit import checkpoints, merkle, receipts
from audit import tree as audit_tree
from audit.append import audit_record
from audit.canonical import entry_hash_of, payload_hash_of
from audit.checkpoint_verify import audit_verify_checkpoints
from audit.erasure import _redact
from audit.models import AuditEvent
from audit.verify import audit_verify

pytestmark = pytest.mark.django_db
TOOL = Path(__file__).resolve().parents[2] / "tools" / "verify_receipt.py"


@pytest.fixture
def signing(tmp_path, settings):
    """A real key pair and checkpoint folder, configured as an operator would."""
    key = checkpoints.key_generate(directory=tmp_path / "keys")
    settings.AUDIT_SIGNING_KEY = ""
    settings.AUDIT_SIGNING_KEY_FILE = key.private_path
    settings.AUDIT_CHECKPOINT_DIR = tmp_path / "checkpoints"
    return key


def _entries(n: int, start: int = 0) -> list[AuditEvent]:
    return [
        audit_record(event_type="x", payload={"i": i}, summary=f"e{i}")
        for i in range(start, start + n)
    ]


def _verify(signing) -> dict:
    report = audit_verify_checkpoints(
        directory=Path(checkpoints.settings.AUDIT_CHECKPOINT_DIR),
        public_key=checkpoints.load_public_key(signing.public_path),
    )
    return report.as_dict()


def _triggers(cursor, state: str) -> None:
    cursor.execute(f"ALTER TABLE assistant_auditevent {state} TRIGGER attest_audit_append_only")
    cursor.execute(
        f"ALTER TABLE assistant_audittreenode {state} TRIGGER attest_audit_tree_append_only"
    )


def _rebuild_tree(cursor) -> None:
    """What a superuser covering their tracks does: recompute every tree node."""
    cursor.execute("DELETE FROM assistant_audittreenode")
    cursor.execute("SELECT payload_hash FROM assistant_auditevent ORDER BY seq")
    get = merkle.list_getter([audit_tree.leaf_of(h) for (h,) in cursor.fetchall()])
    size = AuditEvent.objects.count()
    for n in range(size):
        for level, index in merkle.complete_nodes_after_append(n):
            cursor.execute(
                "INSERT INTO assistant_audittreenode (level, index, hash) VALUES (%s, %s, %s)",
                [level, index, get(level, index)],
            )


def _rewrite_from(event: AuditEvent, payload: dict) -> None:
    """Alter one entry and recompute its hash and every later one, then the whole tree."""
    with connection.cursor() as cursor:
        _triggers(cursor, "DISABLE")
        cursor.execute(
            "UPDATE assistant_auditevent SET payload = %s::jsonb WHERE id = %s",
            [json.dumps(payload), event.id],
        )
        prev = AuditEvent.objects.get(pk=event.id).prev_hash
        for e in AuditEvent.objects.filter(id__gte=event.id).order_by("id"):
            e.payload_hash = payload_hash_of(e)
            e.prev_hash = prev
            e.entry_hash = entry_hash_of(prev, e.payload_hash)
            cursor.execute(
                "UPDATE assistant_auditevent SET payload_hash = %s, prev_hash = %s, "
                "entry_hash = %s WHERE id = %s",
                [e.payload_hash, e.prev_hash, e.entry_hash, e.id],
            )
            prev = e.entry_hash
        _rebuild_tree(cursor)
        _triggers(cursor, "ENABLE")


def _delete_from_seq(seq: int) -> None:
    """Delete the newest entries and the tree nodes over them, trigger disabled."""
    with connection.cursor() as cursor:
        _triggers(cursor, "DISABLE")
        cursor.execute("DELETE FROM assistant_auditevent WHERE seq >= %s", [seq])
        cursor.execute(
            "DELETE FROM assistant_audittreenode WHERE (index + 1) * (1::bigint << level) > %s",
            [seq],
        )
        _triggers(cursor, "ENABLE")


def test_the_stored_tree_matches_the_rfc_root_and_proofs_at_every_size():
    events = _entries(37)
    frontier = merkle.Frontier()
    for e in events:
        frontier.append(audit_tree.leaf_of(e.payload_hash))
        size = e.seq + 1
        assert audit_tree.tree_root(size) == frontier.root()
    assert [e.seq for e in events] == list(range(37))
    root = audit_tree.tree_root(37)
    for e in events:
        proof = audit_tree.tree_inclusion_proof(e.seq, 37)
        assert merkle.verify_inclusion(audit_tree.leaf_of(e.payload_hash), e.seq, 37, proof, root)
    proof = audit_tree.tree_consistency_proof(20, 37)
    assert merkle.verify_consistency(20, 37, audit_tree.tree_root(20), root, proof)
    # One stored node per closed subtree: n - popcount(n), so append is O(1) on average.
    assert connection.cursor().execute("SELECT count(*) FROM assistant_audittreenode").fetchone()[
        0
    ] == 37 - bin(37).count("1")


def test_the_tree_is_append_only():
    from django.db.utils import DatabaseError

    _entries(4)
    with pytest.raises(DatabaseError, match="append-only"), connection.cursor() as cursor:
        cursor.execute("UPDATE assistant_audittreenode SET hash = '\\x00'::bytea")


def test_keygen_writes_a_private_file_only_its_owner_reads_and_never_overwrites(tmp_path, capsys):
    call_command("audit", "keygen", "--out", str(tmp_path), "--json")
    out = json.loads(capsys.readouterr().out)
    private = Path(out["private_key_file"])
    assert private.stat().st_mode & 0o777 == 0o600
    assert "BEGIN PRIVATE KEY" in private.read_text()
    public = checkpoints.load_public_key(out["public_key_file"])
    assert checkpoints.key_id_of(public) == out["key_id"]
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="not overwriting"):
        call_command("audit", "keygen", "--out", str(tmp_path))


def test_an_untouched_trail_with_erasures_verifies_against_its_checkpoints(signing, capsys):
    events = _entries(5)
    first = checkpoints.checkpoint_write()
    assert first is not None and first.tree_size == 5
    assert checkpoints.checkpoint_write() is None  # nothing new: no new file
    _redact([events[1].id, events[3].id], reason="erasure request")
    _entries(3, start=5)
    checkpoints.checkpoint_write()
    report = _verify(signing)
    assert report["ok"] is True, report
    assert report["entries"] == 8 and report["checkpoints"] == 2 and report["redacted"] == 2
    assert report["first_bad"] is None
    call_command(
        "audit",
        "verify",
        "--checkpoints",
        str(checkpoints.settings.AUDIT_CHECKPOINT_DIR),
        "--public-key",
        str(signing.public_path),
        "--json",
    )
    out = json.loads(capsys.readouterr().out)
    assert {"ok", "entries", "checkpoints", "redacted", "first_bad"} <= out.keys()
    assert out["ok"] is True


def test_a_superuser_who_rewrites_an_entry_and_every_later_hash_is_named(signing, capsys):
    events = _entries(6)
    checkpoints.checkpoint_write()
    _entries(4, start=6)
    checkpoints.checkpoint_write()
    victim = events[3]
    _rewrite_from(victim, {"i": 3, "note": "nothing to see"})
    assert audit_verify().ok  # the chain and the stored tree are consistent again
    report = _verify(signing)
    assert report["ok"] is False
    assert report["first_bad"]["kind"] == "entry"
    assert report["first_bad"]["id"] == victim.id
    with pytest.raises(SystemExit) as exit_info:
        call_command(
            "audit",
            "verify",
            "--checkpoints",
            str(checkpoints.settings.AUDIT_CHECKPOINT_DIR),
            "--public-key",
            str(signing.public_path),
        )
    assert exit_info.value.code == 1
    assert f"entry {victim.id}" in capsys.readouterr().out


def test_a_truncated_tail_is_detected(signing):
    _entries(7)
    written = checkpoints.checkpoint_write()
    _delete_from_seq(5)
    assert audit_verify().ok  # the chain alone cannot tell
    report = _verify(signing)
    assert report["ok"] is False
    assert report["first_bad"]["kind"] == "checkpoint"
    assert report["first_bad"]["checkpoint"] == written.file_name
    assert "holds only 5" in report["first_bad"]["reason"]


def test_a_restored_older_backup_that_went_on_is_detected_and_names_the_first_lost_entry(
    signing,
):
    _entries(5)
    checkpoints.checkpoint_write()
    _entries(3, start=5)
    checkpoints.checkpoint_write()
    _delete_from_seq(5)  # the backup taken at 5 entries, restored
    replacement = _entries(4, start=100)  # ... and the product ran on
    assert audit_verify().ok
    report = _verify(signing)
    assert report["ok"] is False
    assert report["first_bad"]["id"] == replacement[0].id
    assert report["first_bad"]["seq"] == 5


def test_an_altered_checkpoint_or_one_signed_with_another_key_fails(signing, tmp_path, settings):
    _entries(3)
    written = checkpoints.checkpoint_write()
    path = Path(settings.AUDIT_CHECKPOINT_DIR) / written.file_name
    original = path.read_text()
    body = json.loads(original)
    body["root_hash"] = hashlib.sha256(b"forged").hexdigest()
    path.write_text(json.dumps(body))
    report = _verify(signing)
    assert report["ok"] is False and report["first_bad"]["checkpoint"] == written.file_name
    assert "signature" in report["first_bad"]["reason"]

    path.write_text(original)
    assert _verify(signing)["ok"] is True
    other = checkpoints.key_generate(directory=tmp_path / "other")
    settings.AUDIT_SIGNING_KEY_FILE = other.private_path
    _entries(1, start=3)
    forged = checkpoints.checkpoint_write()
    report = _verify(signing)
    assert report["ok"] is False and report["first_bad"]["checkpoint"] == forged.file_name
    assert "not with the given key" in report["first_bad"]["reason"]


def _run_tool(*args: str) -> subprocess.CompletedProcess:
    """The standalone script in a fresh interpreter; it must not load Django or Attest."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = {[str(TOOL), *args]!r}\n"
        "try:\n"
        f"    runpy.run_path({str(TOOL)!r}, run_name='__main__')\n"
        "    status = 0\n"
        "except SystemExit as exc:\n"
        "    status = exc.code\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in "
        "('django', 'assistant', 'ingest', 'psycopg', 'orjson')]\n"
        "assert not loaded, loaded\n"
        "sys.exit(status)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE"}}
    return subprocess.run(
        [sys.executable, "-I", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=TOOL.parent,
    )


def test_an_answer_receipt_verifies_offline_and_a_tampered_one_does_not(
    signing, admin_user, tmp_path
):
    from assistant.services import question_ask
    from tests.factories import ingest_bytes, make_collection

    collection = make_collection("Policies", "policies")
    ingest_bytes(collection, "leave.txt", b"Staff receive twenty-five days of annual leave.")
    answer = question_ask(
        user=admin_user, collection=collection, question="How many days of annual leave?", k=3
    )
    event = selectors.answer_event(answer)
    assert event is not None and event.payload["answer_id"] == answer.id
    with pytest.raises(receipts.ReceiptUnavailable) as pending:
        receipts.receipt_for_event(event)
    assert pending.value.pending
    _entries(2)  # later entries: the proof must still hold against a bigger tree
    checkpoints.checkpoint_write()
    receipt = receipts.receipt_for_event(event)
    receipt_file = tmp_path / "receipt.json"
    receipt_file.write_text(json.dumps(receipt))
    record_file = tmp_path / "record.json"
    record_file.write_bytes(receipts.entry_record(event))

    result = _run_tool(
        str(receipt_file), "--public-key", str(signing.public_path), "--payload", str(record_file)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("The receipt holds")
    assert f"is leaf {event.seq} of the audit tree" in result.stdout
    assert f"event question.answered at {event.created_at.isoformat()}" in result.stdout

    tampered = json.loads(json.dumps(receipt))
    tampered["inclusion_proof"][0] = hashlib.sha256(b"x").hexdigest()
    bad_file = tmp_path / "tampered.json"
    bad_file.write_text(json.dumps(tampered))
    result = _run_tool(str(bad_file), "--public-key", str(signing.public_path))
    assert result.returncode == 1
    assert "does NOT hold" in result.stdout and "inclusion proof" in result.stdout

    other_record = json.loads(record_file.read_text())
    other_record["payload"]["answer"] = "Staff receive forty days of annual leave."
    record_file.write_text(json.dumps(other_record))
    result = _run_tool(
        str(receipt_file), "--public-key", str(signing.public_path), "--payload", str(record_file)
    )
    assert result.returncode == 1 and "answer record" in result.stdout

    other = checkpoints.key_generate(directory=tmp_path / "other")
    result = _run_tool(str(receipt_file), "--public-key", str(other.public_path))
    assert result.returncode == 1 and "signed with key" in result.stdout


def test_the_tool_reads_the_keygen_pem_by_hand_and_refuses_other_key_types(tmp_path):
    """verify_receipt.py parses the public key PEM itself (cryptography's PEM loader costs a
    third of a run): it must read exactly the key `audit keygen` writes, and no other kind."""
    import importlib.util

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    spec = importlib.util.spec_from_file_location("verify_receipt_tool", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)  # type: ignore[union-attr]
    made = checkpoints.key_generate(directory=tmp_path / "keys")
    loaded = tool.load_public_key(made.public_path)
    assert (
        loaded.public_bytes_raw()
        == checkpoints.load_public_key(made.public_path).public_bytes_raw()
    )

    ec_file = tmp_path / "ec.pub"
    ec_file.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError, match="not an Ed25519 public key"):
        tool.load_public_key(ec_file)
    receipt_file = tmp_path / "receipt.json"
    receipt_file.write_text("{}")
    result = _run_tool(str(receipt_file), "--public-key", str(ec_file))
    assert result.returncode == 2 and "not an Ed25519 public key" in result.stderr


def test_the_receipt_command_prints_the_receipt(signing, capsys, tmp_path):
    from django.core.management.base import CommandError

    event = _entries(3)[1]
    with pytest.raises(CommandError, match="pending"):
        call_command("audit", "receipt", str(event.id))
    call_command("audit", "checkpoint")
    assert "Checkpoint of 3 entries" in capsys.readouterr().out
    record = tmp_path / "record.json"
    call_command("audit", "receipt", str(event.id), "--record", str(record))
    receipt = json.loads(capsys.readouterr().out)
    assert receipt["audit_id"] == event.id and receipt["leaf_index"] == 1
    assert hashlib.sha256(record.read_bytes()).hexdigest() == receipt["payload_hash"]


def test_without_a_key_answers_are_audited_and_receipts_say_why(settings, tmp_path):
    settings.AUDIT_SIGNING_KEY = ""
    settings.AUDIT_SIGNING_KEY_FILE = tmp_path / "missing" / "audit_ed25519"
    event = _entries(1)[0]
    with pytest.raises(receipts.ReceiptUnavailable) as info:
        receipts.receipt_for_event(event)
    assert not info.value.pending and "not being signed" in info.value.reason
    from django.core.checks import run_checks

    ids = [m.id for m in run_checks(include_deployment_checks=True)]
    assert "attest.W001" in ids


def test_the_key_can_come_from_the_environment_setting(settings, tmp_path):
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    settings.AUDIT_SIGNING_KEY = base64.b64encode(seed).decode()
    settings.AUDIT_SIGNING_KEY_FILE = tmp_path / "none"
    settings.AUDIT_CHECKPOINT_DIR = tmp_path / "cp"
    _entries(2)
    written = checkpoints.checkpoint_write()
    assert (tmp_path / "cp" / written.file_name).exists()
    from django.core.checks import run_checks

    assert "attest.W001" not in [m.id for m in run_checks(include_deployment_checks=True)]


def test_the_beat_task_writes_a_checkpoint_only_when_the_trail_grew(signing):
    from audit.tasks import audit_checkpoint

    _entries(2)
    name = audit_checkpoint()
    assert name.startswith("checkpoint-000000000002-")
    assert audit_checkpoint() == "unchanged"


def test_the_answer_page_offers_the_receipt_to_whoever_may_see_the_answer(
    signing, client, plain_user, django_user_model
):
    from django.urls import reverse

    from tests.factories import grant, ingest_bytes, make_collection

    collection = make_collection("Handbook", "handbook")
    ingest_bytes(collection, "hours.txt", b"The office opens at eight in the morning.")
    grant(collection, plain_user)
    client.force_login(plain_user)
    response = client.post(
        reverse("portal:ask"),
        {"collection": "handbook", "question": "When does the office open?"},
        follow=True,
    )
    assert "Receipt pending" in response.content.decode()
    question_id = response.redirect_chain[-1][0].rstrip("/").split("/")[-1]
    receipt_url = reverse("portal:receipt", args=[question_id])
    pending = client.get(receipt_url)
    assert pending.status_code == 202 and pending.json()["status"] == "pending"

    checkpoints.checkpoint_write()
    page = client.get(reverse("portal:answer", args=[question_id])).content.decode()
    assert "download the receipt" in page
    download = client.get(receipt_url)
    assert download.status_code == 200
    assert "attachment" in download["Content-Disposition"]
    receipt = download.json()
    record = client.get(reverse("portal:record", args=[question_id])).content
    assert hashlib.sha256(record).hexdigest() == receipt["payload_hash"]
    assert json.loads(record)["payload"]["question"] == "When does the office open?"

    stranger = django_user_model.objects.create_user(username="stranger", password="x" * 14)
    client.force_login(stranger)
    assert client.get(receipt_url).status_code == 404
    assert client.get(reverse("portal:record", args=[question_id])).status_code == 404


def test_reviewers_can_download_any_entrys_receipt_and_others_cannot(
    signing, client, officer, plain_user
):
    from django.urls import reverse

    event = _entries(3)[0]
    url = reverse("compliance:receipt", args=[event.id])
    client.force_login(officer)
    assert client.get(url).status_code == 202
    checkpoints.checkpoint_write()
    assert (
        "receipt (JSON)"
        in client.get(reverse("compliance:detail", args=[event.id])).content.decode()
    )
    receipt = client.get(url).json()
    assert receipt["leaf_index"] == event.seq
    assert receipt["checkpoint"]["tree_size"] == AuditEvent.objects.count()
    client.force_login(plain_user)
    assert client.get(url).status_code == 404


def test_a_receipt_is_refused_when_the_tree_lost_entries_after_its_checkpoint(signing):
    events = _entries(6)
    checkpoints.checkpoint_write()
    _delete_from_seq(4)
    with pytest.raises(receipts.ReceiptUnavailable, match="smaller than its signed checkpoint"):
        receipts.receipt_for_event(events[1])


def test_checkpoints_are_posted_to_the_witness_and_a_dead_witness_loses_nothing(
    signing, settings, caplog
):
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received: list[dict] = []

    class Witness(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Witness)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.AUDIT_WITNESS_URL = f"http://127.0.0.1:{server.server_port}/checkpoints"
    try:
        _entries(2)
        written = checkpoints.checkpoint_write()
    finally:
        server.shutdown()
        server.server_close()
    assert received == [written.signed_part()]
    assert not written.signature_problem(checkpoints.load_public_key(signing.public_path))

    _entries(1, start=2)
    again = checkpoints.checkpoint_write()  # the witness is gone now
    assert again is not None and again.tree_size == 3
    assert (Path(settings.AUDIT_CHECKPOINT_DIR) / again.file_name).exists()
    assert "not sent to the witness" in caplog.text

"""The operator commands, run as subprocesses against the real database (and worker)."""

import json

import pytest

from tests.conftest import run_manage

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_ingest_sync_then_ask_json(cuad_pdf, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "policy.txt").write_text(
        "Visitors must sign in at reception.\fBadges are kept 30 days."
    )
    (notes / "empty.txt").write_bytes(b"")
    done = run_manage(
        "ingest", str(cuad_pdf), str(notes), "--collection", "cuad", "--create", "--sync", "--json"
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    by_name = {d["name"]: d for d in report["documents"]}
    assert set(by_name) == {cuad_pdf.name, "policy.txt", "empty.txt"}
    assert by_name[cuad_pdf.name]["status"] == "ready"
    assert by_name[cuad_pdf.name]["pages"] == 8
    assert by_name[cuad_pdf.name]["chunks"] > 0
    assert by_name["policy.txt"]["pages"] == 2
    assert by_name["empty.txt"]["status"] == "failed"
    assert "empty" in by_name["empty.txt"]["error"]
    assert report["seconds"] > 0
    assert all(
        set(d) == {"path", "name", "status", "pages", "chunks", "error"}
        for d in report["documents"]
    )

    from audit.models import AuditEvent

    uploads = AuditEvent.objects.filter(event_type="document.uploaded")
    assert uploads.count() == 3 and uploads.first().actor_username.startswith("cli:")
    assert AuditEvent.objects.filter(event_type="collection.created").count() == 1

    again = run_manage("ingest", str(cuad_pdf), "--collection", "cuad", "--sync", "--json")
    assert json.loads(again.stdout)["documents"][0]["status"] == "duplicate"

    asked = run_manage(
        "ask",
        "What discount does the distributor get on the price list?",
        "--collection",
        "cuad",
        "--json",
        "--k",
        "4",
    )
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert set(answer) == {"answer", "refused", "backend", "model", "audit_id", "citations"}
    assert answer["refused"] is False
    assert answer["audit_id"] is not None
    first = answer["citations"][0]
    assert set(first) >= {"n", "document", "path", "page", "start", "end", "text", "score"}
    assert first["path"] == str(cuad_pdf.resolve())
    assert any(c["page"] == 5 and "thirty (30) per cent" in c["text"] for c in answer["citations"])


def test_ingest_through_the_worker_waits_for_the_result(celery_worker, tmp_path):
    path = tmp_path / "handbook.md"
    path.write_text("# Leave\n\nStaff receive 25 days of annual leave.\n")
    done = run_manage("ingest", str(path), "--collection", "hr", "--create", "--json")
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)["documents"][0]
    assert row["status"] == "ready"
    assert row["chunks"] == 1


def test_unknown_collection_is_a_clear_error(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("hello there")
    done = run_manage("ingest", str(path), "--collection", "missing", "--sync")
    assert done.returncode != 0
    assert "--create" in done.stderr
    asked = run_manage("ask", "anything?", "--collection", "missing")
    assert asked.returncode != 0
    assert "No collection" in asked.stderr


def _lease_mail() -> bytes:
    from tests.ingest import formats

    lease = formats.text_pdf(["Lease, page one.", "The deposit is held by Harbor Escrow Ltd."])
    return formats.eml_with_attachments(lease, b"Inventory: two keys and one fridge.")


def test_ingest_sync_ingests_email_attachments_too(tmp_path):
    """Issue 3: an e-mail's attachments become documents linked to the message."""
    from ingest.models import Document

    path = tmp_path / "lease.eml"
    path.write_bytes(_lease_mail())
    done = run_manage("ingest", str(path), "--collection", "mail", "--create", "--sync", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["documents"][0]["status"] == "ready"
    message = Document.objects.get(name="lease.eml")
    children = {d.name: d.status for d in message.attachments.all()}
    assert children == {"lease.pdf": "ready", "inventory.txt": "ready"}


def test_worker_queues_and_ingests_email_attachments(celery_worker, tmp_path):
    from ingest.models import Document
    from tests.conftest import wait_for

    path = tmp_path / "lease.eml"
    path.write_bytes(_lease_mail())
    done = run_manage("ingest", str(path), "--collection", "mail2", "--create", "--json")
    assert done.returncode == 0, done.stderr
    message = Document.objects.get(name="lease.eml", collection__slug="mail2")
    assert message.status == "ready"
    wait_for(
        lambda: sorted(message.attachments.values_list("status", flat=True)) == ["ready", "ready"],
        message="attachments were not ingested by the worker",
    )
    pdf = message.attachments.get(name="lease.pdf")
    assert pdf.page_count == 2 and pdf.chunk_count > 0


def test_ingest_a_folder_with_a_zip_shows_progress_and_reports_each_entry(tmp_path):
    """Issue 3: `ingest` takes folders, files and zips; bad entries fail, the rest lands."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("leave/annual.txt", "Staff receive 25 days of annual leave.")
        archive.writestr("../outside.txt", "escape")
        archive.writestr("bomb.txt", "0" * 3_000_000)
    folder = tmp_path / "load"
    folder.mkdir()
    (folder / "bundle.zip").write_bytes(buffer.getvalue())
    (folder / "sick.txt").write_text("Sick leave needs a note after three days.")
    done = run_manage("ingest", str(folder), "--collection", "hr", "--create", "--sync")
    assert done.returncode == 0, done.stderr
    assert "4 file(s), 2 failed, 0 duplicate(s)" in done.stdout
    assert "climbs out of the archive" in done.stdout and "zip bomb" in done.stdout
    bars = [line for line in done.stderr.splitlines() if line.startswith("[")]
    assert bars[0].startswith("[" + "." * 30 + "]") or "0/4" in bars[0] or "2/4" in bars[0]
    assert bars[-1].startswith("[" + "#" * 30 + "] 4/4 100%") and "ready 2" in bars[-1]
    again = run_manage("ingest", str(folder), "--collection", "hr", "--sync", "--json")
    statuses = [d["status"] for d in json.loads(again.stdout)["documents"]]
    assert statuses == ["duplicate"] * 4

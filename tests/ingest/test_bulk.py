"""Issue 3, bulk loads: zip uploads (hostile entries included), duplicates, cancel, retry."""

import io
import zipfile

import pytest

from assistant import actions as admin_actions
from audit.models import AuditEvent
from ingest.archives import ArchiveLimits, zip_entries
from ingest.models import Chunk, Document
from ingest.pipeline import document_ingest
from tests.factories import make_collection

pytestmark = pytest.mark.django_db

LIMITS = ArchiveLimits(
    max_entries=100, max_total_bytes=10_000_000, max_ratio=200, max_entry_bytes=5_000_000
)


def make_zip(entries: dict[str, bytes], *, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def upload(collection, files, **kwargs):
    return admin_actions.documents_upload(
        collection=collection, files=[(n, d, "") for n, d in files], enqueue=False, **kwargs
    )


def test_zip_entries_land_and_hostile_entries_fail_with_reasons():
    collection = make_collection()
    data = make_zip(
        {
            "policies/badges.txt": b"Staff must wear badges at all times.",
            "policies/visitors.md": b"# Visitors\n\nVisitors sign in at reception.",
            "../../etc/passwd.txt": b"root:x:0:0",
            "/abs/path.txt": b"absolute",
            "inner.zip": make_zip({"a.txt": b"nested"}),
            "__MACOSX/._badges.txt": b"resource fork",
            "bomb.txt": b"0" * 4_000_000,  # deflates ~1000x: over the ratio limit
        }
    )
    outcomes = upload(collection, [("bundle.zip", data)])
    by_path = {o.path: o for o in outcomes}
    assert set(by_path) == {
        "bundle.zip/policies/badges.txt",
        "bundle.zip/policies/visitors.md",
        "bundle.zip/../../etc/passwd.txt",
        "bundle.zip//abs/path.txt",
        "bundle.zip/inner.zip",
        "bundle.zip/bomb.txt",
    }
    assert by_path["bundle.zip/policies/badges.txt"].status == "queued"
    assert "climbs out" in by_path["bundle.zip/../../etc/passwd.txt"].error
    assert "absolute" in by_path["bundle.zip//abs/path.txt"].error
    assert "archive inside the archive" in by_path["bundle.zip/inner.zip"].error
    assert "zip bomb" in by_path["bundle.zip/bomb.txt"].error
    failed = Document.objects.filter(collection=collection, status="failed")
    assert failed.count() == 4
    assert all(d.status_message and not d.file for d in failed)
    # The good entries are stored and ingest; the refused ones are audited as refused.
    for document in Document.objects.filter(collection=collection, status="queued"):
        assert document_ingest(document_id=document.id).status == "ready"
    assert Document.objects.filter(collection=collection, status="ready").count() == 2
    assert AuditEvent.objects.filter(event_type="document.rejected").count() == 4
    assert AuditEvent.objects.filter(event_type="document.uploaded").count() == 2


def test_declared_sizes_are_not_trusted_and_totals_are_capped():
    # Stored (no compression): ratio 1, so only the size caps can stop these entries.
    data = make_zip(
        {"a.txt": b"a" * 3000, "b.txt": b"b" * 3000, "c.txt": b"c" * 100},
        compression=zipfile.ZIP_STORED,
    )
    limits = ArchiveLimits(
        max_entries=10, max_total_bytes=5000, max_ratio=200, max_entry_bytes=4000
    )
    entries = list(zip_entries(data, limits))
    assert entries[0].data == b"a" * 3000
    assert entries[1].data is None and "ZIP_MAX_TOTAL_BYTES" in entries[1].error
    assert entries[2].data is None and "ZIP_MAX_TOTAL_BYTES" in entries[2].error
    # An entry whose header claims a small size but unpacks larger is cut off while reading.
    big = make_zip({"big.txt": b"x" * 6000}, compression=zipfile.ZIP_STORED)
    small = ArchiveLimits(
        max_entries=10, max_total_bytes=10**6, max_ratio=200, max_entry_bytes=4000
    )
    [entry] = list(zip_entries(big, small))
    assert entry.data is None and "UPLOAD_MAX_BYTES" in entry.error


def test_too_many_entries_or_a_corrupt_zip_fail_as_one_document(settings):
    settings.ZIP_MAX_ENTRIES = 3
    collection = make_collection()
    many = make_zip({f"{i}.txt": b"text %d" % i for i in range(5)})
    [outcome] = upload(collection, [("many.zip", many)])
    assert outcome.status == "failed" and "ZIP_MAX_ENTRIES" in outcome.error
    [broken] = upload(collection, [("broken.zip", b"PK\x03\x04 not really a zip")])
    assert broken.status == "failed" and "not a readable zip" in broken.error
    assert Document.objects.filter(collection=collection).count() == 2


def test_the_same_file_again_is_reported_as_a_duplicate():
    collection = make_collection()
    text = b"Visitors must sign in at reception."
    first = upload(collection, [("a.txt", text)])
    again = upload(collection, [("copy-of-a.txt", text), ("b.txt", b"Another file.")])
    assert [o.status for o in first] == ["queued"]
    assert [o.status for o in again] == ["duplicate", "queued"]
    assert "already in this collection as a.txt" in again[0].error
    # Inside a zip too, and the same zip twice gives the same refusals, not new rows.
    archive = make_zip({"x/a.txt": text, "../evil.txt": b"no"})
    outcomes = upload(collection, [("z.zip", archive)]) + upload(collection, [("z.zip", archive)])
    assert [o.status for o in outcomes] == ["duplicate", "failed", "duplicate", "duplicate"]
    assert Document.objects.filter(collection=collection).count() == 3


def test_cancelled_documents_are_skipped_and_retry_requeues_a_failed_one(admin_user):
    collection = make_collection()
    queued, _ = admin_actions.document_upload(
        collection=collection, name="later.txt", data=b"Not yet.", enqueue=False
    )
    assert admin_actions.collection_cancel(collection=collection, user=admin_user) == 1
    queued.refresh_from_db()
    assert queued.status == "cancelled"
    # A worker that takes the task anyway leaves it alone.
    assert document_ingest(document_id=queued.id).status == "cancelled"
    assert not Chunk.objects.filter(document=queued).exists()
    assert AuditEvent.objects.filter(event_type="documents.cancelled").count() == 1

    bad, _ = admin_actions.document_upload(
        collection=collection, name="x.pdf", data=b"%PDF-1.4 broken", enqueue=False
    )
    assert document_ingest(document_id=bad.id).status == "failed"
    assert admin_actions.document_reingest(document=bad, user=admin_user)
    bad.refresh_from_db()
    assert bad.status == "queued"
    # Re-ingest the collection: the cancelled one comes back too (the failed one is pending).
    assert admin_actions.collection_reingest(collection=collection, user=admin_user) == 1
    queued.refresh_from_db()
    assert queued.status == "queued"
    assert document_ingest(document_id=queued.id).status == "ready"
    types = set(AuditEvent.objects.values_list("event_type", flat=True))
    assert {"document.reingested", "collection.reingested"} <= types


def test_a_corrupt_entry_fails_alone():
    good = b"Staff must wear badges at all times, in every building."
    data = bytearray(make_zip({"bad.txt": b"some text to deflate " * 200, "good.txt": good}))
    start = data.find(b"bad.txt") + len(b"bad.txt")  # the first entry's compressed bytes
    data[start + 5 : start + 40] = b"\xff" * 35
    entries = {e.path: e for e in zip_entries(bytes(data), LIMITS)}
    assert entries["bad.txt"].data is None and "corrupt" in entries["bad.txt"].error
    assert entries["good.txt"].data == good

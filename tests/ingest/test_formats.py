"""Every supported format through the real pipeline (issue 3, "Formats"): real files made here
with the libraries that write them, parsed, chunked, embedded with the real model, stored in
PostgreSQL, and found again by retrieval."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.urls import reverse

from assistant.retrieval import retrieve
from ingest.models import Chunk, Document
from ingest.services import document_delete
from tests.factories import grant, ingest_bytes, make_collection
from tests.ingest import formats
from tests.ocr import require_ocr

pytestmark = pytest.mark.django_db


def _chunks(document: Document) -> list[Chunk]:
    chunks = list(Chunk.objects.filter(document=document).order_by("ordinal"))
    for c in chunks:
        assert document.text[c.start : c.end] == c.text
    return chunks


def _top_hit(collection, question: str):
    hits = retrieve(question=question, collection_ids=[collection.id], k=3)
    assert hits, f"retrieval found nothing for {question!r}"
    return hits[0]


def test_docx_headings_tables_and_page_breaks(settings):
    settings.CHUNK_SIZE, settings.CHUNK_OVERLAP = 120, 0
    collection = make_collection()
    document = ingest_bytes(collection, "msa.docx", formats.docx_with_table())
    assert document.status == Document.Status.READY, document.status_message
    assert document.mime_type.endswith("wordprocessingml.document")
    # The table keeps its rows and columns, one row per line.
    assert "| Service | Fee | Due |\n| Hosting | 1,200 EUR | monthly |\n" in document.text
    assert "| Support | 300 EUR | quarterly |" in document.text
    assert document.page_count == 2  # a hard page break
    chunks = _chunks(document)
    notice = next(c for c in chunks if "ninety (90) days" in c.text)
    assert notice.heading == "Master Services Agreement > 12. Termination > 12.2 Notice"
    assert notice.page == 1
    signed = next(c for c in chunks if "escrow agent" in c.text)
    assert signed.page == 2
    hit = _top_hit(collection, "What is the monthly hosting fee?")
    assert "| Hosting | 1,200 EUR | monthly |" in hit.text
    hit = _top_hit(collection, "How much notice must be given to terminate?")
    assert "ninety (90) days" in hit.text


def test_markdown_headings_become_heading_paths(settings):
    settings.CHUNK_SIZE, settings.CHUNK_OVERLAP = 120, 0
    source = (
        "# Data retention policy\n\nThis policy covers patient records.\n\n"
        "## Imaging\n\nRadiology images are kept for eight years after the last visit.\n\n"
        "```\n# not a heading inside code\n```\n\n"
        "Billing\n-------\n\nInvoices are archived for ten years.\n"
    )
    collection = make_collection()
    document = ingest_bytes(collection, "retention.md", source.encode())
    assert document.status == Document.Status.READY, document.status_message
    assert document.text == source  # offsets point into the file's own text
    chunks = _chunks(document)
    imaging = next(c for c in chunks if "eight years" in c.text)
    assert imaging.heading == "Data retention policy > Imaging"
    billing = next(c for c in chunks if "ten years" in c.text)
    assert billing.heading == "Data retention policy > Billing"
    assert "eight years" in _top_hit(collection, "How long are radiology images kept?").text


def test_html_keeps_visible_text_headings_and_table_rows(settings):
    settings.CHUNK_SIZE, settings.CHUNK_OVERLAP = 120, 0
    collection = make_collection()
    document = ingest_bytes(collection, "visitors.html", formats.HTML_PAGE)
    assert document.status == Document.Status.READY, document.status_message
    assert document.mime_type == "text/html"
    for hidden in [
        "SCRIPT-TEXT-MUST-NOT-APPEAR",
        "SECOND-SCRIPT",
        "HIDDEN-ATTRIBUTE-TEXT",
        "INLINE-HIDDEN-TEXT",
        "ARIA-HIDDEN-TEXT",
        "NOSCRIPT-TEXT",
        "COMMENT-TEXT",
        "color: red",
        "CLASS-HIDDEN-TEXT",
    ]:
        assert hidden not in document.text
    assert "All visitors must sign in at reception and wear a badge." in document.text
    assert "| Day | Open | Close |\n| Monday | 08:00 | 18:00 |" in document.text
    table = next(c for c in _chunks(document) if "| Monday |" in c.text)
    assert table.heading == "Visitor policy > Opening hours"
    hit = _top_hit(collection, "What time does the office close on Saturday?")
    assert "| Saturday | 10:00 | 14:00 |" in hit.text


def test_email_body_headers_and_attachments_as_linked_documents(client, plain_user):
    lease = formats.text_pdf(
        ["Lease for unit 4B, page one.", "The security deposit is held by Harbor Escrow Ltd."]
    )
    inventory = b"Inventory of unit 4B: two keys, one fridge, one washing machine."
    collection = make_collection()
    message = ingest_bytes(
        collection, "lease-mail.eml", formats.eml_with_attachments(lease, inventory)
    )
    assert message.status == Document.Status.READY, message.status_message
    assert message.mime_type == "message/rfc822"
    for line in [
        "From: Ana Ruiz <ana.ruiz@example.org>",
        "To: records@example.org",
        "Date: Tue, 03 Mar 2026 09:15:00 +0000",
        "Subject: Signed lease for unit 4B",
        "The monthly rent is 1,450 EUR.",
    ]:
        assert line in message.text
    attachments = {d.name: d for d in message.attachments.all()}
    assert set(attachments) == {"lease.pdf", "inventory.txt"}
    pdf = attachments["lease.pdf"]
    assert pdf.collection_id == collection.id and pdf.parent_id == message.id
    assert pdf.status == Document.Status.READY and pdf.page_count == 2
    deposit = next(c for c in _chunks(pdf) if "Harbor Escrow" in c.text)
    assert deposit.page == 2
    assert attachments["inventory.txt"].status == Document.Status.READY
    hit = _top_hit(collection, "Who holds the security deposit?")
    assert hit.document_id == pdf.id and hit.page == 2
    assert _top_hit(collection, "What is the monthly rent?").document_id == message.id

    grant(collection, plain_user)
    client.force_login(plain_user)
    page = client.get(reverse("portal:collection", args=[collection.slug])).content.decode()
    assert "attachment of lease-mail.eml" in page
    view = client.get(reverse("portal:document", args=[pdf.id])).content.decode()
    assert "Attachment of" in view and "lease-mail.eml" in view
    view = client.get(reverse("portal:document", args=[message.id])).content.decode()
    assert "inventory.txt" in view and "lease.pdf" in view

    # Deleting the message takes its attachments, their chunks and stored files with it.
    storage, names = pdf.file.storage, [pdf.file.name, attachments["inventory.txt"].file.name]
    with pytest.MonkeyPatch.context() as patch:
        from django.db import transaction

        patch.setattr(transaction, "on_commit", lambda fn, using=None, robust=False: fn())
        document_delete(document=message)
    assert not Document.objects.filter(collection=collection).exists()
    assert not any(storage.exists(name) for name in names)


def test_html_only_email_is_reduced_to_visible_text():
    collection = make_collection()
    data = formats.eml_with_attachments(formats.text_pdf(["x" * 30]), b"y", html_only=True)
    message = ingest_bytes(collection, "note.eml", data)
    assert message.status == Document.Status.READY, message.status_message
    assert "Please file the signed lease." in message.text
    assert "NO-SCRIPT-IN-MAIL" not in message.text and "<p>" not in message.text


def test_image_is_read_by_ocr_with_confidence():
    require_ocr()
    collection = make_collection()
    image = formats.page_image(
        ["The boiler was inspected on 12 May 2026.", "Next inspection is due in twelve months."]
    )
    document = ingest_bytes(collection, "inspection.png", image)
    assert document.status == Document.Status.READY, document.status_message
    assert "boiler was inspected" in document.text
    assert document.pages[0]["page"] == 1 and document.pages[0]["ocr"] is True
    assert document.pages[0]["confidence"] > 80
    hit = _top_hit(collection, "When is the next boiler inspection due?")
    assert hit.document_id == document.id and hit.page == 1


def test_multipage_tiff_is_one_page_per_frame():
    require_ocr()
    from PIL import Image

    frames = [
        Image.open(io.BytesIO(formats.page_image([text]))).convert("L")
        for text in ["First frame mentions the pharmacy.", "Second frame mentions the archive."]
    ]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:])
    document = ingest_bytes(make_collection(), "fax.tiff", buffer.getvalue())
    assert document.status == Document.Status.READY, document.status_message
    assert document.page_count == 2 and [p["ocr"] for p in document.pages] == [True, True]
    archive = next(c for c in _chunks(document) if "archive" in c.text)
    assert archive.page == 2


def test_scanned_pages_are_ocrd_and_text_pages_are_not(client, plain_user):
    require_ocr()
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for part in [
        formats.text_pdf(["This page has a real text layer about parking permits."]),
        formats.scanned_pdf(
            [["Scanned page two covers the fire exits."], ["Fire exits are on level three."]]
        ),
    ]:
        for page in PdfReader(io.BytesIO(part)).pages:
            writer.add_page(page)
    buffer = io.BytesIO()
    writer.write(buffer)
    collection = make_collection()
    document = ingest_bytes(collection, "building.pdf", buffer.getvalue())
    assert document.status == Document.Status.READY, document.status_message
    assert document.page_count == 3
    assert document.pages[0] == {"page": 1, "ocr": False}
    assert [p["ocr"] for p in document.pages[1:]] == [True, True]
    assert all(p["confidence"] > 80 for p in document.pages[1:])
    level = next(c for c in _chunks(document) if "level three" in c.text)
    assert level.page == 3
    hit = _top_hit(collection, "On which level are the fire exits?")
    assert hit.document_id == document.id and hit.page == 3

    grant(collection, plain_user)
    client.force_login(plain_user)
    view = client.get(reverse("portal:document", args=[document.id])).content.decode()
    assert "2 page(s) read by OCR" in view and "page 3: OCR, mean confidence" in view
    page = client.get(reverse("portal:collection", args=[collection.slug])).content.decode()
    assert "(2 by OCR)" in page


def test_ocr_callback_runs_only_when_a_page_needs_ocr():
    require_ocr()
    from ingest.parsers import parse

    calls: list[int] = []
    parse(
        formats.text_pdf(["A page with plenty of real text on it."]),
        "t.pdf",
        on_ocr=lambda: calls.append(1),
    )
    assert calls == []
    parsed = parse(
        formats.scanned_pdf([["Only pixels here, no text layer."]]),
        "s.pdf",
        on_ocr=lambda: calls.append(1),
    )
    assert calls == [1]
    assert parsed.pages[0].ocr and "pixels" in parsed.text


def _pgm(rows: list[bytes]) -> bytes:
    return b"P5\n# rendered\n%d %d\n255\n" % (len(rows[0]), len(rows)) + b"".join(rows)


def test_pages_with_nothing_to_read_are_recognised_and_others_are_not():
    from ingest.parsers import ocr

    white = b"\xff" * 40
    assert ocr.nothing_to_read(_pgm([white] * 30))  # blank
    assert ocr.nothing_to_read(_pgm([white] * 20 + [b"\x00" * 40] * 2 + [white] * 8))  # a rule
    assert ocr.nothing_to_read(_pgm([b"\xff" * 10 + b"\x00" * 3 + b"\xff" * 27] * 30))  # a bar
    glyph = b"\xff" * 10 + b"\x00" * 8 + b"\xff" * 22  # 8 pixels wide, 12 rows tall: ink
    assert not ocr.nothing_to_read(_pgm([white] * 9 + [glyph] * 12 + [white] * 9))
    assert not ocr.nothing_to_read(b"\x89PNG\r\n")  # not a PGM: read it
    assert not ocr.nothing_to_read(b"P5\n40 30\n255\n" + white)  # truncated: read it


def test_a_blank_page_without_a_text_layer_is_not_sent_to_tesseract(monkeypatch):
    """Rendered and found empty, the page keeps its empty text; Tesseract is not run for it,
    while the scanned page beside it still is."""
    require_ocr()
    from pypdf import PdfReader, PdfWriter

    from ingest.parsers import ocr, parse

    writer = PdfWriter()
    writer.add_blank_page(612, 792)
    for page in PdfReader(
        io.BytesIO(formats.scanned_pdf([["The loading dock closes at six."]]))
    ).pages:
        writer.add_page(page)
    buffer = io.BytesIO()
    writer.write(buffer)
    read: list[int] = []
    real = ocr.ocr_image

    def counting(image, **kwargs):
        read.append(len(image))
        return real(image, **kwargs)

    monkeypatch.setattr(ocr, "ocr_image", counting)
    parsed = parse(buffer.getvalue(), "dock.pdf")
    assert len(read) == 1  # the scanned page only
    assert [page.ocr for page in parsed.pages] == [False, True]
    assert "loading dock" in parsed.text


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        (
            "cafe.txt",
            "Caf\xe9 na\xefve r\xe9sum\xe9 \u2013 \u201cterms\u201d apply.".encode("cp1252"),
            "Caf\xe9 na\xefve r\xe9sum\xe9 \u2013 \u201cterms\u201d apply.",
        ),
        (
            "notepad.txt",
            "\ufeffUTF-16 from Notepad: rent is due monthly.".encode("utf-16-le"),
            "UTF-16 from Notepad: rent is due monthly.",
        ),
        (
            "bare16.txt",
            "No byte order mark, still UTF-16 text.".encode("utf-16-le"),
            "No byte order mark, still UTF-16 text.",
        ),
        (
            "dogovor.txt",
            (
                "\u0414\u043e\u0433\u043e\u0432\u043e\u0440 \u0430\u0440\u0435\u043d\u0434\u044b \u043f\u043e\u043c\u0435\u0449\u0435\u043d\u0438\u044f. "
                * 4
            )
            .strip()
            .encode("cp1251"),
            "\u0414\u043e\u0433\u043e\u0432\u043e\u0440 \u0430\u0440\u0435\u043d\u0434\u044b",
        ),
    ],
)
def test_text_that_is_not_utf8_is_decoded(name, data, expected):
    document = ingest_bytes(make_collection(), name, data)
    assert document.status == Document.Status.READY, document.status_message
    assert expected in document.text


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.docx", b"", "empty (0 bytes)"),
        ("report.docx", b"%PDF-1.7\n1 0 obj", "named .docx but its content is a PDF"),
        ("memo.docx", _zip({"content.xml": b"<x/>"}), "ZIP archive"),
        (
            "broken.docx",
            _zip({"word/document.xml": b"<not really xml"}),
            "Word document is damaged",
        ),
        ("sheet.xlsx", _zip({"xl/workbook.xml": b"<x/>"}), "Excel workbooks are not supported"),
        ("old.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "legacy Microsoft Office"),
        ("photo.png", b"this is not an image at all", "named .png but its content is not a PNG"),
        ("cut.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image is damaged"),
        ("notes.txt", b"\x00\x01\x02\x03binary\x00\xff\xfe" * 50, "binary, not text"),
        ("mail.eml", b"just a line of text without headers", "no e-mail headers"),
        ("page.html", b"<html><script>only('script')</script></html>", "contains no text"),
        ("tool.exe", b"MZ\x90\x00" + b"\x00" * 60, "a Windows program"),
    ],
)
def test_broken_or_lying_files_fail_with_a_reason(name, data, reason):
    collection = make_collection()
    document = ingest_bytes(collection, name, data)
    assert document.status == Document.Status.FAILED
    assert reason in document.status_message
    assert "Internal error" not in document.status_message
    assert not Chunk.objects.filter(document=document).exists()


def test_docx_zip_bomb_is_refused(monkeypatch):
    from ingest.parsers import docx as docx_parser

    monkeypatch.setattr(docx_parser, "MAX_UNPACKED_BYTES", 1_000_000)
    padded = zipfile.ZipFile(io.BytesIO(formats.docx_with_table()))
    entries = {info.filename: padded.read(info) for info in padded.infolist()}
    entries["word/media/padding.bin"] = b"\x00" * 2_000_000  # compresses to ~2 KB
    document = ingest_bytes(make_collection(), "bomb.docx", _zip(entries))
    assert document.status == Document.Status.FAILED
    assert "zip bomb" in document.status_message


def test_pixel_bomb_image_is_refused(monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    document = ingest_bytes(make_collection(), "huge.png", formats.page_image(["x"]))
    assert document.status == Document.Status.FAILED
    assert "too large" in document.status_message


def test_deeply_nested_html_does_not_crash_the_worker():
    data = b"<html><body>" + b"<div>" * 20000 + b"Deep text survives." + b"</div>" * 20000
    document = ingest_bytes(make_collection(), "deep.html", data)
    assert document.status in {Document.Status.READY, Document.Status.FAILED}
    assert "Internal error" not in document.status_message


def test_status_moves_through_ocr_while_pages_are_read(monkeypatch):
    require_ocr()
    from ingest import pipeline

    seen: list[str] = []
    real = pipeline._set_status

    def spy(document, status, message=""):
        seen.append(status)
        real(document, status, message)

    monkeypatch.setattr(pipeline, "_set_status", spy)
    document = ingest_bytes(make_collection(), "scan.pdf", formats.scanned_pdf([["Pixels only."]]))
    assert document.status == Document.Status.READY, document.status_message
    # "parsing" is set by the worker's conditional claim (not _set_status); the OCR state
    # comes only while pages are read.
    assert seen == ["ocr", "embedding"]
    seen.clear()
    ingest_bytes(make_collection("B", "b"), "plain.txt", b"No OCR needed for this one.")
    assert seen == ["embedding"]


def test_without_tesseract_scans_fail_with_the_install_hint(monkeypatch):
    from ingest.parsers import ocr

    monkeypatch.setattr(ocr, "tesseract_path", lambda: None)
    collection = make_collection()
    image = ingest_bytes(collection, "scan.png", formats.page_image(["Some words."]))
    assert image.status == Document.Status.FAILED
    assert "OCR is not available on this server" in image.status_message
    assert "tesseract-ocr" in image.status_message
    pdf = ingest_bytes(collection, "scan.pdf", formats.scanned_pdf([["Some words."]]))
    assert pdf.status == Document.Status.FAILED
    assert "no text layer and OCR is not installed" in pdf.status_message


def test_pdf_with_thousands_of_pages(settings):
    """A 3,000-page PDF with a text layer is read page by page; 3,000 pages without one are
    refused before any OCR starts, with the limit named."""
    from pypdf import PdfReader, PdfWriter

    from ingest.parsers import parse

    page = PdfReader(io.BytesIO(formats.text_pdf(["Indemnity clause, repeated on every page."])))
    writer = PdfWriter()
    for _ in range(3000):
        writer.add_page(page.pages[0])
    buffer = io.BytesIO()
    writer.write(buffer)
    parsed = parse(buffer.getvalue(), "big.pdf")
    assert parsed.page_count == 3000
    assert parsed.page_at(parsed.pages[2999].start) == 3000

    settings.OCR_MAX_PAGES = 1000
    writer = PdfWriter()
    for _ in range(3000):
        writer.add_blank_page(width=200, height=200)
    buffer = io.BytesIO()
    writer.write(buffer)
    document = ingest_bytes(make_collection(), "blank.pdf", buffer.getvalue())
    assert document.status == Document.Status.FAILED
    if formats_have_ocr():
        assert "3000 pages need OCR" in document.status_message
        assert "OCR_MAX_PAGES" in document.status_message
    else:
        assert "no text layer" in document.status_message


def formats_have_ocr() -> bool:
    from ingest.parsers import ocr

    return ocr.ocr_available() and ocr.pdftoppm_path() is not None


def test_email_attachment_names_cannot_escape_and_attached_messages_are_ingested():
    from email.message import EmailMessage

    inner = EmailMessage()
    inner["From"] = "legal@example.org"
    inner["Subject"] = "Original contract thread"
    inner.set_content("The warranty period is twenty-four months.")
    outer = EmailMessage()
    outer["From"] = "clerk@example.org"
    outer["To"] = "records@example.org"
    outer["Subject"] = "Fwd: contract"
    outer.set_content("Forwarding the thread below.")
    outer.add_attachment(
        b"Escaped? No.", maintype="text", subtype="plain", filename="../../etc/passwd.txt"
    )
    outer.add_attachment(inner)
    collection = make_collection()
    message = ingest_bytes(collection, "fwd.eml", outer.as_bytes())
    assert message.status == Document.Status.READY, message.status_message
    children = {d.name: d for d in message.attachments.all()}
    assert set(children) == {".._.._etc_passwd.txt", "Original contract thread.eml"}
    assert all(d.status == Document.Status.READY for d in children.values())
    forwarded = children["Original contract thread.eml"]
    assert "twenty-four months" in forwarded.text and "From: legal@example.org" in forwarded.text
    assert _top_hit(collection, "How long is the warranty period?").document_id == forwarded.id


def test_docx_saved_by_word_takes_pages_from_its_rendered_page_breaks():
    """Word records where each page began (w:lastRenderedPageBreak); those give the pages the
    author saw, including a page that begins inside a table."""
    import docx
    from docx.oxml import OxmlElement

    from ingest.parsers import parse

    def rendered_break(run) -> None:
        run._r.insert(0, OxmlElement("w:lastRenderedPageBreak"))

    document = docx.Document()
    document.add_paragraph("Page one: the parties.")
    second = document.add_paragraph()
    rendered_break(second.add_run("Page two: the fees."))
    table = document.add_table(rows=3, cols=2)
    for row, (a, b) in zip(
        table.rows, [("Item", "Fee"), ("Audit", "900"), ("Review", "400")], strict=True
    ):
        row.cells[0].text, row.cells[1].text = a, b
    rendered_break(table.rows[2].cells[0].paragraphs[0].runs[0])  # page three starts mid-table
    tail = document.add_paragraph("Still page three, after a rendered layout.")
    tail.runs[0].add_break(docx.enum.text.WD_BREAK.LINE)
    buffer = io.BytesIO()
    document.save(buffer)
    parsed = parse(buffer.getvalue(), "word.docx")
    assert parsed.page_count == 3
    at = parsed.page_at
    assert at(parsed.text.index("Page one")) == 1
    assert at(parsed.text.index("Page two")) == 2
    assert at(parsed.text.index("| Audit | 900 |")) == 2
    assert at(parsed.text.index("| Review | 400 |")) == 3
    assert at(parsed.text.index("Still page three")) == 3


def test_ocr_that_fails_on_every_page_gives_its_reason(settings):
    """A broken OCR set-up (here: a language with no data installed) is named, not hidden."""
    require_ocr()
    settings.OCR_LANGUAGES = "xyz"
    document = ingest_bytes(make_collection(), "scan.pdf", formats.scanned_pdf([["Words."]]))
    assert document.status == Document.Status.FAILED
    assert "OCR failed: language data for 'xyz' is missing" in document.status_message

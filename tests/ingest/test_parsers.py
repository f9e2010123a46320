import io

import pytest
from pypdf import PdfWriter

from ingest.parsers import ParseError, parse
from ingest.parsers.text import parse_text


def test_real_pdf_gives_text_per_page(cuad_pdf):
    parsed = parse(cuad_pdf.read_bytes(), cuad_pdf.name)
    assert parsed.mime_type == "application/pdf"
    assert parsed.page_count == 8
    page5 = parsed.pages[4]
    assert "thirty (30) per cent" in parsed.text[page5.start : page5.end]
    offset = parsed.text.index("thirty (30) per cent")
    assert parsed.page_at(offset) == 5


def _blank_pdf(password: str | None = None) -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    if password:
        writer.encrypt(user_password=password, owner_password=password)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_encrypted_pdf_is_refused_with_a_reason():
    with pytest.raises(ParseError, match="password-protected"):
        parse(_blank_pdf(password="s3cret"), "locked.pdf")


def test_pdf_without_text_layer_says_so():
    with pytest.raises(ParseError, match="no text layer"):
        parse(_blank_pdf(), "scan.pdf")


def test_corrupt_pdf_is_refused_with_a_reason():
    with pytest.raises(ParseError, match=r"damaged|no pages"):
        parse(b"%PDF-1.7\n" + b"garbage " * 200, "broken.pdf")


def test_empty_file_is_refused():
    with pytest.raises(ParseError, match="empty"):
        parse(b"", "nothing.txt")


def test_extension_that_lies_about_the_content():
    with pytest.raises(ParseError, match="not a PDF"):
        parse(b"just some text", "contract.pdf")
    with pytest.raises(ParseError, match=r"named \.txt but its content is a PNG image"):
        parse(b"\x89PNG\r\n\x1a\n\x00\x00\x00", "notes.txt")
    with pytest.raises(ParseError, match="binary"):
        parse(b"\x01\x02\x00\x00\x03 not text at all \x00\x00\x01" * 20, "notes.txt")
    with pytest.raises(ParseError, match=r"named \.docx but its content is a PDF"):
        parse(b"%PDF-1.7\n...", "letter.docx")
    with pytest.raises(ParseError, match=r"named \.png but its content is not a PNG image"):
        parse(b"plain words, no image here", "scan.png")
    with pytest.raises(ParseError, match="Unsupported file type: the file is a GIF image"):
        parse(b"GIF89a" + b"\x00" * 20, "scan.png")


def test_unsupported_type_names_what_is_accepted():
    with pytest.raises(ParseError, match=r"Unsupported file type \.csv: upload PDF, Word"):
        parse(b"col1,col2\n1,2\n", "sheet.csv")
    with pytest.raises(ParseError, match="damaged ZIP"):
        parse(b"PK\x03\x04 zip", "archive.zip")


def test_text_form_feeds_are_pages_and_offsets_are_unchanged():
    raw = "Page one.\fPage two has the answer.\fPage three."
    parsed = parse_text(raw.encode())
    assert parsed.text == raw
    assert [p.number for p in parsed.pages] == [1, 2, 3]
    assert parsed.page_at(raw.index("answer")) == 2


def test_legacy_encoded_text_is_decoded():
    parsed = parse_text("Caf\xe9 \u2013 terms".encode("cp1252"))
    assert parsed.text == "Caf\xe9 \u2013 terms"

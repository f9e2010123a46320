"""Parsers: file bytes in, `ParsedDocument` out. A plain dict maps a detected type to a parser.

Every parser returns the document's full extracted text plus the character range of each page
in it (and, where the format marks them, its headings); chunk offsets, page numbers and heading
paths are derived from those downstream.

The type comes from the file's first bytes (its magic number), not from its name. A name whose
extension claims one kind of file while the bytes are another is refused with a reason.
"""

from __future__ import annotations

import io
import zipfile
from typing import TYPE_CHECKING

from .base import Attachment, HeadingSpan, PageSpan, ParsedDocument, ParseError, join_pages
from .docx import parse_docx
from .eml import parse_email
from .html import parse_html
from .image import parse_image
from .ocr import ocr_available
from .pdf import parse_pdf
from .records import RECORD_PARSERS, detect_record
from .text import parse_markdown, parse_text

if TYPE_CHECKING:
    from collections.abc import Callable

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
TEXT = "text/plain"
MARKDOWN = "text/markdown"
HTML = "text/html"
EMAIL = "message/rfc822"
PNG = "image/png"
JPEG = "image/jpeg"
TIFF = "image/tiff"

PARSERS: dict[str, Callable[..., ParsedDocument]] = {
    PDF: parse_pdf,
    DOCX: parse_docx,
    TEXT: parse_text,
    MARKDOWN: parse_markdown,
    HTML: parse_html,
    EMAIL: parse_email,
    PNG: parse_image,
    JPEG: parse_image,
    TIFF: parse_image,
    **RECORD_PARSERS,
}
OCR_TYPES = {PDF, PNG, JPEG, TIFF}  # parsers that take an `on_ocr` callback

# What each extension promises. Text kinds are told apart by name only (their bytes look alike).
EXTENSIONS = {
    ".pdf": PDF,
    ".docx": DOCX,
    ".txt": TEXT,
    ".text": TEXT,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".html": HTML,
    ".htm": HTML,
    ".eml": EMAIL,
    ".png": PNG,
    ".jpg": JPEG,
    ".jpeg": JPEG,
    ".tif": TIFF,
    ".tiff": TIFF,
}
TEXT_TYPES = {TEXT, MARKDOWN, HTML, EMAIL}
IMAGE_TYPES = {PNG, JPEG, TIFF}
DESCRIPTIONS = {
    PDF: "a PDF",
    DOCX: "a Word document",
    PNG: "a PNG image",
    JPEG: "a JPEG image",
    TIFF: "a TIFF image",
}
ACCEPTED = (
    "PDF, Word (.docx), TXT, Markdown, HTML, e-mail (.eml), PNG, JPEG, TIFF, FHIR JSON or C-CDA XML"
)

# Recognised but refused, with the reason.
REFUSED = [
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Microsoft Office file (.doc/.xls/.msg)"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"MZ", "a Windows program"),
    (b"\x7fELF", "a Linux program"),
]


def _zip_kind(data: bytes) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ParseError("The file is a damaged ZIP package and cannot be read.") from exc
    if "word/document.xml" in names:
        return DOCX
    if "xl/workbook.xml" in names:
        raise ParseError("Excel workbooks are not supported; export the sheet to PDF.")
    if "ppt/presentation.xml" in names:
        raise ParseError("PowerPoint files are not supported; export the slides to PDF.")
    raise ParseError(
        "The file is a ZIP archive; upload it as a batch (it is unpacked) or upload its files."
    )


def _magic(data: bytes) -> str | None:
    """The type the bytes say they are, or None for text (or unknown) content."""
    head = data[:1024]
    if head.startswith(b"%PDF-") or head.find(b"%PDF-") != -1:
        return PDF
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return TIFF
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(data)
    for signature, what in REFUSED:
        if head.startswith(signature):
            raise ParseError(f"Unsupported file type: the file is {what}. Upload {ACCEPTED}.")
    return None


def detect_type(data: bytes, filename: str) -> str:
    """The content type from the bytes themselves, with the name only to tell text kinds apart.

    Raises ParseError for content we cannot read, in words an admin understands.
    """
    name = filename.lower()
    ext = name[name.rfind(".") :] if "." in name else ""
    claimed = EXTENSIONS.get(ext)
    if not data:
        raise ParseError("The file is empty (0 bytes).")
    found = _magic(data)
    if found is not None:
        if claimed is None or claimed == found or {claimed, found} <= IMAGE_TYPES:
            return found  # no (or an unknown) extension, or a matching one: trust the bytes
        if claimed in TEXT_TYPES:
            what = DESCRIPTIONS[found]
            raise ParseError(f"The file is named {ext} but its content is {what}, not text.")
        raise ParseError(
            f"The file is named {ext} but its content is {DESCRIPTIONS[found]}, "
            f"not {DESCRIPTIONS[claimed]}."
        )
    if record_type := detect_record(data):  # FHIR, C-CDA, Synthea text: by content
        return record_type
    if claimed in DESCRIPTIONS:
        raise ParseError(f"The file is named {ext} but its content is not {DESCRIPTIONS[claimed]}.")
    if claimed is None:
        sniff = data[:512].lstrip().lower()
        if sniff.startswith((b"<!doctype html", b"<html")):
            return HTML
        raise ParseError(
            f"Unsupported file type{(' ' + ext) if ext else ''}: upload {ACCEPTED} files."
        )
    return claimed


def parse(
    data: bytes, filename: str, *, on_ocr: Callable[[], None] | None = None
) -> ParsedDocument:
    """Parse a file. `on_ocr` is called once, before OCR starts, if any page needs it."""
    mime = detect_type(data, filename)
    options = {"on_ocr": on_ocr} if mime in OCR_TYPES else {}
    parsed = PARSERS[mime](data, **options)
    parsed.mime_type = mime
    if not parsed.text.strip():
        if mime == PDF:
            if not ocr_available():
                raise ParseError(
                    "No text could be extracted: the PDF has no text layer and OCR is not "
                    "installed on this server (tesseract-ocr)."
                )
            raise ParseError(
                "No text could be extracted: the PDF has no text layer and OCR found no words."
            )
        if mime in IMAGE_TYPES:
            raise ParseError("OCR found no text in the image.")
        raise ParseError("The file contains no text.")
    return parsed


__all__ = [
    "ACCEPTED",
    "Attachment",
    "HeadingSpan",
    "PageSpan",
    "ParseError",
    "ParsedDocument",
    "detect_type",
    "join_pages",
    "parse",
]

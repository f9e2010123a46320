"""Parsers: file bytes in, `ParsedDocument` out. A plain dict maps a detected type to a parser.

Every parser returns the document's full extracted text plus the character range of each page
in it; chunk offsets and page numbers are derived from those ranges downstream.
"""

from __future__ import annotations

from collections.abc import Callable

from .base import PageSpan, ParsedDocument, ParseError, join_pages
from .pdf import parse_pdf
from .records import RECORD_PARSERS, detect_record
from .text import parse_text

PDF = "application/pdf"
TEXT = "text/plain"
MARKDOWN = "text/markdown"

PARSERS: dict[str, Callable[[bytes], ParsedDocument]] = {
    PDF: parse_pdf,
    TEXT: parse_text,
    MARKDOWN: parse_text,
    **RECORD_PARSERS,
}

TEXT_EXTENSIONS = {".txt": TEXT, ".text": TEXT, ".md": MARKDOWN, ".markdown": MARKDOWN}


def detect_type(data: bytes, filename: str) -> str:
    """The content type from the bytes themselves, with the name only to tell text kinds apart.

    Raises ParseError for content we cannot read, in words an admin understands.
    """
    name = filename.lower()
    ext = name[name.rfind(".") :] if "." in name else ""
    if not data:
        raise ParseError("The file is empty (0 bytes).")
    if record_type := detect_record(data):  # FHIR, C-CDA, Synthea text: by content
        return record_type
    if data.startswith(b"%PDF-") or data[:1024].find(b"%PDF-") != -1:
        return PDF
    if ext == ".pdf":
        raise ParseError("The file is named .pdf but its content is not a PDF.")
    if ext in TEXT_EXTENSIONS:
        if b"\x00" in data[:8192]:
            raise ParseError(f"The file is named {ext} but its content is binary, not text.")
        return TEXT_EXTENSIONS[ext]
    raise ParseError(
        f"Unsupported file type{(' ' + ext) if ext else ''}: upload PDF, TXT or Markdown files."
    )


def parse(data: bytes, filename: str) -> ParsedDocument:
    mime = detect_type(data, filename)
    parsed = PARSERS[mime](data)
    parsed.mime_type = mime
    if not parsed.text.strip():
        if mime == PDF:
            raise ParseError(
                "No text could be extracted: the PDF has no text layer (scanned pages need OCR)."
            )
        raise ParseError("The file contains no text.")
    return parsed


__all__ = ["PageSpan", "ParsedDocument", "ParseError", "detect_type", "join_pages", "parse"]

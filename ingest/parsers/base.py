"""Typed hand-off between parsing and chunking."""

from __future__ import annotations

from dataclasses import dataclass, field

PAGE_SEPARATOR = "\n\n"
BLOCK_SEPARATOR = "\n\n"


class ParseError(Exception):
    """The file cannot be ingested; the message is shown to people as the reason."""


@dataclass(frozen=True)
class PageSpan:
    number: int  # 1-based page number
    start: int  # offset of the page's first character in ParsedDocument.text
    end: int  # offset just past its last character
    ocr: bool = False  # the page's text came from OCR, not from a text layer
    confidence: float | None = None  # OCR's mean word confidence (0-100), when ocr


@dataclass(frozen=True)
class HeadingSpan:
    """A heading the file itself marks as one (DOCX style, HTML <h2>, Markdown `##`)."""

    start: int  # offset of the heading's first character in ParsedDocument.text
    level: int  # 1 = top level
    title: str


@dataclass(frozen=True)
class Attachment:
    """A file carried inside another (an e-mail attachment); ingested as its own document."""

    name: str
    data: bytes


@dataclass
class ParsedDocument:
    text: str
    pages: list[PageSpan]
    mime_type: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    # Empty when the format has no heading markup; chunking then finds headings in the text.
    headings: list[HeadingSpan] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    ocr_seconds: float = 0.0  # time spent in OCR, part of the parse time
    # Clinical records only: the patient the document is about, and each fact line's source.
    patient: PatientIdentity | None = None
    refs: list[SourceRef] = field(default_factory=list)

    @property
    def page_count(self) -> int:
        return len(self.pages)

    def page_at(self, offset: int) -> int | None:
        """The page holding character `offset` (the last page starting at or before it)."""
        found = None
        for page in self.pages:
            if page.start <= offset:
                found = page.number
            else:
                break
        return found


def clean(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


def join_pages(page_texts: list[str]) -> ParsedDocument:
    """Concatenate page texts with a blank line between them, recording each page's range."""
    parts: list[str] = []
    pages: list[PageSpan] = []
    offset = 0
    for number, raw in enumerate(page_texts, start=1):
        text = clean(raw)
        if parts:
            parts.append(PAGE_SEPARATOR)
            offset += len(PAGE_SEPARATOR)
        pages.append(PageSpan(number=number, start=offset, end=offset + len(text)))
        parts.append(text)
        offset += len(text)
    return ParsedDocument(text="".join(parts), pages=pages)


def table_row(cells: list[str]) -> str:
    """One table row as one line, `| a | b |`, so rows and columns survive in plain text."""
    return "| " + " | ".join(" ".join(c.replace("|", "/").split()) for c in cells) + " |"


class TextBuilder:
    """Assemble extracted text block by block (paragraphs, headings, tables, page breaks),
    recording heading and page offsets as they are written.

    Blocks are separated by a blank line, which chunking reads as a paragraph boundary; the
    rows of a table are one block, one line per row.
    """

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._length = 0
        self._page_starts: list[int] = [0]
        self._page_open = False  # has the current page any block yet
        self.headings: list[HeadingSpan] = []

    def _append(self, text: str) -> int:
        if self._page_open:
            self._parts.append(BLOCK_SEPARATOR)
            self._length += len(BLOCK_SEPARATOR)
        elif self._length:
            self._parts.append(PAGE_SEPARATOR)
            self._length += len(PAGE_SEPARATOR)
            self._page_starts[-1] = self._length
        start = self._length
        self._parts.append(text)
        self._length += len(text)
        self._page_open = True
        return start

    def paragraph(self, text: str) -> None:
        text = clean(text).strip("\n")
        if text.strip():
            self._append(text)

    def heading(self, text: str, level: int) -> None:
        title = " ".join(clean(text).split())
        if title:
            start = self._append(title)
            self.headings.append(HeadingSpan(start=start, level=max(1, level), title=title))

    def table(self, rows: list[list[str]]) -> None:
        lines = [table_row(cells) for cells in rows if any(c.strip() for c in cells)]
        if lines:
            self._append("\n".join(lines))

    def page_break(self) -> None:
        """Start a new page (nothing happens if the current page is still empty)."""
        if self._page_open:
            self._page_starts.append(self._length)  # moved past the separator on first block
            self._page_open = False

    def build(self) -> ParsedDocument:
        text = "".join(self._parts)
        starts = (
            self._page_starts
            if self._page_open or len(self._page_starts) == 1
            else (self._page_starts[:-1])
        )
        pages = []
        for number, start in enumerate(starts, start=1):
            end = starts[number] - len(PAGE_SEPARATOR) if number < len(starts) else len(text)
            pages.append(PageSpan(number=number, start=start, end=max(start, end)))
        return ParsedDocument(text=text, pages=pages, headings=list(self.headings))


@dataclass
class PatientIdentity:
    """Who a clinical record is about, as the record states it (see ingest/records.py)."""

    given: str = ""
    family: str = ""
    birth_date: str = ""  # YYYY-MM-DD, or "" when the record does not say
    gender: str = ""
    identifiers: list[dict[str, str]] = field(default_factory=list)  # {system, value, type}

    @property
    def name(self) -> str:
        return " ".join(p for p in (self.given, self.family) if p)


@dataclass(frozen=True)
class SourceRef:
    """A line of a rendered clinical record and where it came from (FHIR resource type/id, or
    C-CDA section/entry): offsets into ParsedDocument.text."""

    start: int
    end: int
    ref: str

"""Typed hand-off between parsing and chunking."""

from __future__ import annotations

from dataclasses import dataclass, field

PAGE_SEPARATOR = "\n\n"


class ParseError(Exception):
    """The file cannot be ingested; the message is shown to people as the reason."""


@dataclass(frozen=True)
class PageSpan:
    number: int  # 1-based page number
    start: int  # offset of the page's first character in ParsedDocument.text
    end: int  # offset just past its last character


@dataclass
class ParsedDocument:
    text: str
    pages: list[PageSpan]
    mime_type: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
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


def join_pages(page_texts: list[str]) -> ParsedDocument:
    """Concatenate page texts with a blank line between them, recording each page's range."""
    parts: list[str] = []
    pages: list[PageSpan] = []
    offset = 0
    for number, raw in enumerate(page_texts, start=1):
        text = raw.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
        if parts:
            parts.append(PAGE_SEPARATOR)
            offset += len(PAGE_SEPARATOR)
        pages.append(PageSpan(number=number, start=offset, end=offset + len(text)))
        parts.append(text)
        offset += len(text)
    return ParsedDocument(text="".join(parts), pages=pages)


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

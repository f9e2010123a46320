"""Split a parsed document into passages that keep exact offsets, page and heading.

Pages are split into paragraphs, paragraphs into sentences (and over-long sentences at
whitespace); sentences are packed greedily up to `size` characters, preferring to end a chunk
at a paragraph boundary, and consecutive chunks share up to `overlap` characters of whole
sentences. A chunk's text is always `parsed.text[start:end]`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .parsers.base import HeadingSpan, ParsedDocument

PARAGRAPH_BREAK = re.compile(r"\n\s*\n\s*")
SENTENCE_END = re.compile(r"(?<=[.!?;])[\"')\]]?\s+")
HEADING = re.compile(
    r"^\s*(?:(?:ARTICLE|Article|SECTION|Section|PART|Part|SCHEDULE|Schedule|EXHIBIT|Exhibit)"
    r"\s+[0-9IVXLC]+[A-Za-z]?\b.*"
    r"|\d{1,2}(?:\.\d{1,2})*\.?\s+[A-Z][^\n]{0,80})$"
)


@dataclass(frozen=True)
class ChunkDraft:
    ordinal: int
    text: str
    start: int
    end: int
    page: int | None
    page_end: int | None
    heading: str


@dataclass(frozen=True)
class _Segment:
    start: int
    end: int
    paragraph_end: bool


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _split_long(text: str, start: int, end: int, size: int) -> list[tuple[int, int]]:
    """Cut a span longer than `size` at whitespace (or hard, if there is none)."""
    pieces = []
    while end - start > size:
        cut = text.rfind(" ", start + size // 2, start + size)
        if cut == -1:
            cut = text.rfind("\n", start + size // 2, start + size)
        if cut == -1:
            cut = start + size
        s, e = _strip_span(text, start, cut)
        if e > s:
            pieces.append((s, e))
        start = cut
        start, end = _strip_span(text, start, end)
    if end > start:
        pieces.append((start, end))
    return pieces


def _segments(text: str, start: int, end: int, size: int) -> list[_Segment]:
    segments: list[_Segment] = []
    para_start = start
    boundaries = list(PARAGRAPH_BREAK.finditer(text, start, end))
    spans = []
    for match in boundaries:
        spans.append((para_start, match.start()))
        para_start = match.end()
    spans.append((para_start, end))
    for p_start, p_end in spans:
        p_start, p_end = _strip_span(text, p_start, p_end)
        if p_end <= p_start:
            continue
        sentences: list[tuple[int, int]] = []
        s_start = p_start
        for match in SENTENCE_END.finditer(text, p_start, p_end):
            sentences.append((s_start, match.start() + len(match.group(0).rstrip())))
            s_start = match.end()
        sentences.append((s_start, p_end))
        pieces: list[tuple[int, int]] = []
        for s, e in sentences:
            s, e = _strip_span(text, s, e)
            if e <= s:
                continue
            pieces.extend(_split_long(text, s, e, size) if e - s > size else [(s, e)])
        for index, (s, e) in enumerate(pieces):
            segments.append(_Segment(s, e, paragraph_end=index == len(pieces) - 1))
    return segments


def _headings(text: str) -> list[tuple[int, str]]:
    """Offsets and text of lines that look like section headings."""
    found = []
    offset = 0
    for line in text.split("\n"):
        stripped = line.strip()
        if 3 <= len(stripped) <= 100 and (
            HEADING.match(stripped)
            or (stripped.isupper() and sum(c.isalpha() for c in stripped) >= 4)
        ):
            found.append((offset, stripped.rstrip(".:")))
        offset += len(line) + 1
    return found


def _heading_paths(marks: list[HeadingSpan]) -> list[tuple[int, str]]:
    """Headings the parser marked (DOCX styles, HTML, Markdown) as paths by level:
    "Termination > Notice"."""
    found = []
    stack: list[HeadingSpan] = []
    for mark in marks:
        while stack and stack[-1].level >= mark.level:
            stack.pop()
        stack.append(mark)
        found.append((mark.start, " > ".join(h.title for h in stack)))
    return found


def chunk(parsed: ParsedDocument, *, size: int, overlap: int) -> list[ChunkDraft]:
    """Chunks of at most `size` characters (except a single unbreakable run), page by page."""
    text = parsed.text
    headings = _heading_paths(parsed.headings) if parsed.headings else _headings(text)
    drafts: list[ChunkDraft] = []
    heading_index = -1
    for page in parsed.pages:
        segs = _segments(text, page.start, page.end, size)
        i = 0
        while i < len(segs):
            j = i
            while j + 1 < len(segs) and segs[j + 1].end - segs[i].start <= size:
                j += 1
            # Prefer ending at a paragraph boundary once the chunk is at least half full.
            if not segs[j].paragraph_end and j + 1 < len(segs):
                for cand in range(j - 1, i - 1, -1):
                    if segs[cand].paragraph_end and segs[cand].end - segs[i].start >= size // 2:
                        j = cand
                        break
            start, end = segs[i].start, segs[j].end
            while heading_index + 1 < len(headings) and headings[heading_index + 1][0] <= start:
                heading_index += 1
            drafts.append(
                ChunkDraft(
                    ordinal=len(drafts),
                    text=text[start:end],
                    start=start,
                    end=end,
                    page=page.number,
                    page_end=page.number,
                    heading=headings[heading_index][1] if heading_index >= 0 else "",
                )
            )
            if j + 1 >= len(segs):
                break
            nxt = j + 1
            for cand in range(i + 1, j + 1):
                if segs[j].end - segs[cand].start <= overlap:
                    nxt = cand
                    break
            i = nxt
    return drafts

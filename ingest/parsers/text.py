"""Plain text and Markdown. A form feed starts a new page, as in printed text exports.

The extracted text is the file's text exactly as decoded (universal newlines), so chunk offsets
are offsets into the original file's text. Markdown keeps its markup; its `#` headings (and
underlined headings) are recorded as headings.
"""

from __future__ import annotations

import codecs
import re

from .base import HeadingSpan, PageSpan, ParsedDocument, ParseError

BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
]
CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def _looks_like_utf16(sample: bytes) -> str | None:
    """UTF-16 without a byte order mark: mostly-ASCII text has a NUL in every other byte."""
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) > 0.4 * len(odd) and even.count(0) < 0.05 * len(even):
        return "utf-16-le"
    if even.count(0) > 0.4 * len(even) and odd.count(0) < 0.05 * len(odd):
        return "utf-16-be"
    return None


def _western(text: str) -> bool:
    """Western European text: accented letters are the exception among ASCII letters.

    Text in another 8-bit code page read as cp1252 (Cyrillic, Greek) turns into runs of
    accented Latin letters instead.
    """
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return True
    return sum(1 for c in letters if ord(c) > 127) <= 0.3 * len(letters)


def decode_text(data: bytes) -> str:
    """Bytes to text: BOM, then UTF-8, then UTF-16 by shape, then Windows-1252 (the usual
    legacy encoding of office exports), then detected by charset-normalizer.

    Raises ParseError when the bytes are not text in any encoding we recognise.
    """
    text: str | None = None
    for bom, encoding in BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom) :].decode(encoding)
            except UnicodeDecodeError as exc:
                raise ParseError(
                    f"The file starts as {encoding.upper()} text but is not valid {encoding}."
                ) from exc
            break
    if text is None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    if text is None and (utf16 := _looks_like_utf16(data[:8192])):
        try:
            text = data.decode(utf16)
        except UnicodeDecodeError:
            pass
    if text is None and b"\x00" in data[:8192]:
        raise ParseError("The file is binary, not text.")
    if text is None:
        try:
            candidate = data.decode("cp1252")
            if _western(candidate):
                text = candidate
        except UnicodeDecodeError:
            pass
    if text is None:
        from charset_normalizer import from_bytes

        best = from_bytes(data).best()
        if best is None:
            raise ParseError("The file's text is not in any character encoding we recognise.")
        text = str(best)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    sample = text[:20000]
    if sample and len(CONTROL.findall(sample)) > 0.05 * len(sample):
        raise ParseError("The file is binary, not text.")
    return text


def _pages(text: str) -> list[PageSpan]:
    pages: list[PageSpan] = []
    start = 0
    number = 1
    while True:
        feed = text.find("\f", start)
        if feed == -1:
            pages.append(PageSpan(number=number, start=start, end=len(text)))
            break
        pages.append(PageSpan(number=number, start=start, end=feed))
        start = feed + 1
        number += 1
    return pages


def parse_text(data: bytes) -> ParsedDocument:
    text = decode_text(data)
    return ParsedDocument(text=text, pages=_pages(text))


ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
FENCE = re.compile(r"^ {0,3}(```|~~~)")


def markdown_headings(text: str) -> list[HeadingSpan]:
    """`# Title` and underlined (`===`, `---`) headings, outside fenced code blocks."""
    headings: list[HeadingSpan] = []
    offset = 0
    fence: str | None = None
    previous: tuple[int, str] | None = None  # (offset, line) of the last plain text line
    for line in text.split("\n"):
        stripped = line.strip()
        if fence:
            if stripped.startswith(fence):
                fence = None
        elif match := FENCE.match(line):
            fence = match.group(1)
            previous = None
        elif match := ATX.match(line):
            title = match.group(2).strip()
            if title:
                headings.append(
                    HeadingSpan(
                        start=offset + line.index(title), level=len(match.group(1)), title=title
                    )
                )
            previous = None
        elif (match := SETEXT.match(line)) and previous is not None:
            start, prev = previous
            title = prev.strip()
            level = 1 if match.group(1).startswith("=") else 2
            headings.append(HeadingSpan(start=start + prev.index(title), level=level, title=title))
            previous = None
        else:
            previous = (offset, line) if stripped and not line.startswith("    ") else None
        offset += len(line) + 1
    return headings


def parse_markdown(data: bytes) -> ParsedDocument:
    parsed = parse_text(data)
    parsed.headings = markdown_headings(parsed.text)
    return parsed

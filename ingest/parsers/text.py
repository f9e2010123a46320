"""Plain text and Markdown. A form feed starts a new page, as in printed text exports.

The extracted text is the file's text exactly as Python reads it (UTF-8, universal newlines),
so chunk offsets are offsets into the original file's text.
"""

from __future__ import annotations

from .base import PageSpan, ParsedDocument


def decode_text(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # Legacy exports are mostly Windows-1252; latin-1 never fails as a last resort.
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


def parse_text(data: bytes) -> ParsedDocument:
    text = decode_text(data)
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
    return ParsedDocument(text=text, pages=pages)

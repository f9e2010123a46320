"""Word documents (.docx) with python-docx: paragraphs, headings by style, tables by row.

Body paragraphs and tables are read in document order. A paragraph styled as a heading (or
with an outline level) becomes a heading; a table becomes one line per row, `| a | b |`, with
merged cells written once.

Page numbers: a .docx saved by Word records where each page began when Word last laid it out
(`w:lastRenderedPageBreak`); when those are present they give the pages, as the author saw
them. Otherwise (files written by other programs) hard page breaks (`w:br type=page`,
`pageBreakBefore`) start pages.
"""

from __future__ import annotations

import io
import re
import zipfile
from typing import TYPE_CHECKING

from .base import ParsedDocument, ParseError, TextBuilder

if TYPE_CHECKING:
    from docx.table import Table
    from docx.text.paragraph import Paragraph

# A .docx is a zip: refuse archives that would unpack to more than this (zip bombs).
MAX_UNPACKED_BYTES = 512 * 1024 * 1024
HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.IGNORECASE)


def _check_archive(data: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ParseError("The Word document is damaged and cannot be read.") from exc
    if sum(info.file_size for info in infos) > MAX_UNPACKED_BYTES:
        raise ParseError(
            f"The Word document would unpack to more than {MAX_UNPACKED_BYTES // 2**20} MB; "
            "it looks like a zip bomb and was not opened."
        )
    if any(info.flag_bits & 0x1 for info in infos):
        raise ParseError("The Word document is password-protected; upload an unprotected copy.")


def _heading_level(paragraph: Paragraph) -> int | None:
    from docx.oxml.ns import qn

    style = paragraph.style
    name = (style.name or "") if style is not None else ""
    if name.lower() == "title":
        return 1
    if match := HEADING_STYLE.match(name):
        return int(match.group(1)) + 1
    # Custom or localised heading styles: the outline level, on the paragraph or its styles.
    elements = [paragraph._p]
    while style is not None:
        elements.append(style.element)
        style = style.base_style
    for element in elements:
        ppr = element.find(qn("w:pPr"))
        level = ppr.find(qn("w:outlineLvl")) if ppr is not None else None
        if level is not None:
            value = int(level.get(qn("w:val"), "9"))
            return value + 2 if value < 9 else None  # 9 means body text
    return None


RENDERED_BREAK = ".//w:lastRenderedPageBreak"
HARD_BREAK = './/w:br[@w:type="page"]'


def _paragraph_pieces(paragraph: Paragraph, *, rendered: bool) -> tuple[bool, list[str]]:
    """(page break before, the paragraph's text split where pages begin).

    `rendered`: pages begin at Word's rendered page breaks; else at hard page breaks."""
    from docx.oxml.ns import qn

    p = paragraph._p
    ppr = p.find(qn("w:pPr"))
    before = not rendered and ppr is not None and ppr.find(qn("w:pageBreakBefore")) is not None
    if not p.xpath(RENDERED_BREAK if rendered else HARD_BREAK):
        return before, [paragraph.text]
    pieces = [""]
    tags = {
        qn("w:t"): "t",
        qn("w:tab"): "tab",
        qn("w:br"): "br",
        qn("w:cr"): "cr",
        qn("w:lastRenderedPageBreak"): "rendered",
    }
    for element in p.iter(*tags):
        kind = tags[element.tag]
        if kind == "t":
            pieces[-1] += element.text or ""
        elif kind == "tab":
            pieces[-1] += "\t"
        elif kind == "rendered":
            if rendered:
                pieces.append("")
        elif kind == "br" and element.get(qn("w:type")) == "page":
            if not rendered:
                pieces.append("")
        else:
            pieces[-1] += "\n"
    return before, pieces


def _table_rows(table: Table, *, rendered: bool) -> list[list[list[str]]]:
    """The table's rows, as runs of rows split where a new page begins inside the table."""
    runs: list[list[list[str]]] = [[]]
    for row in table.rows:
        if runs[-1] and row._tr.xpath(RENDERED_BREAK if rendered else HARD_BREAK):
            runs.append([])
        cells: list[str] = []
        seen = None
        for cell in row.cells:
            if cell._tc is seen:  # a horizontally merged cell repeats; write it once
                continue
            seen = cell._tc
            cells.append(cell.text)
        runs[-1].append(cells)
    return runs


def parse_docx(data: bytes) -> ParsedDocument:
    _check_archive(data)
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises many types for broken packages
        raise ParseError(f"The Word document is damaged and cannot be read ({exc}).") from exc
    builder = TextBuilder()
    try:
        rendered = bool(document.element.body.xpath(RENDERED_BREAK))
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                for index, rows in enumerate(_table_rows(block, rendered=rendered)):
                    if index:
                        builder.page_break()
                    builder.table(rows)
                continue
            before, pieces = _paragraph_pieces(block, rendered=rendered)
            if before:
                builder.page_break()
            level = _heading_level(block)
            for index, piece in enumerate(pieces):
                if index:
                    builder.page_break()
                if level is not None:
                    builder.heading(piece, level)
                else:
                    builder.paragraph(piece)
    except (ValueError, KeyError, AttributeError, TypeError) as exc:
        raise ParseError(f"The Word document is damaged and cannot be read ({exc}).") from exc
    return builder.build()

"""HTML with BeautifulSoup + lxml: the text a reader sees, headings, tables by row.

Dropped: <head>, scripts, styles, templates, embedded objects, form controls, comments and
anything hidden (`hidden`, `aria-hidden="true"`, inline `display:none` or `visibility:hidden`,
or a <style> rule saying so for a simple `.class` or `#id` selector). Block elements become
paragraphs, <h1>-<h6> headings, tables one line per row (`| a | b |`). The tree is walked
with an explicit stack, so deep nesting cannot overflow.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .base import ParsedDocument, ParseError, TextBuilder

if TYPE_CHECKING:
    from bs4 import BeautifulSoup, PageElement, Tag

SKIP = {
    "head",
    "script",
    "style",
    "noscript",
    "template",
    "svg",
    "math",
    "object",
    "embed",
    "iframe",
    "frame",
    "frameset",
    "canvas",
    "audio",
    "video",
    "select",
    "option",
    "button",
    "input",
    "textarea",
    "datalist",
    "map",
    "meta",
    "link",
    "title",
    "base",
}
HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
BLOCKS = {
    "address",
    "article",
    "aside",
    "blockquote",
    "body",
    "caption",
    "center",
    "dd",
    "details",
    "dialog",
    "dir",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "header",
    "hgroup",
    "hr",
    "html",
    "legend",
    "li",
    "main",
    "menu",
    "nav",
    "ol",
    "p",
    "section",
    "summary",
    "ul",
}
HIDDEN_STYLE = re.compile(r"(display\s*:\s*none|visibility\s*:\s*hidden)", re.IGNORECASE)
# A stylesheet rule hiding simple selectors: `.preheader, #tracking { display: none }`.
HIDDEN_RULE = re.compile(
    r"([^{}]+)\{[^{}]*(?:display\s*:\s*none|visibility\s*:\s*hidden)[^{}]*\}", re.IGNORECASE
)
SIMPLE_SELECTOR = re.compile(r"^[a-z0-9]*[.#][\w-]+$", re.IGNORECASE)
SPACE = re.compile(r"\s+")


def _hidden(tag: Tag) -> bool:
    attrs = tag.attrs or {}
    if "hidden" in attrs or str(attrs.get("aria-hidden", "")).lower() == "true":
        return True
    style = attrs.get("style")
    return bool(style and HIDDEN_STYLE.search(str(style)))


def _visible_text(tag: Tag) -> str:
    """The visible text under `tag`, whitespace collapsed (for cells and headings)."""
    from bs4 import NavigableString, Tag

    parts: list[str] = []
    stack: list[PageElement] = [tag]
    while stack:
        node = stack.pop()
        if isinstance(node, Tag):
            if node is not tag and (node.name in SKIP or _hidden(node)):
                continue
            if node.name == "br" or node.name in BLOCKS:
                parts.append(" ")
            stack.extend(reversed(node.contents))
        elif isinstance(node, NavigableString) and type(node) is NavigableString:
            parts.append(str(node))
    return SPACE.sub(" ", "".join(parts)).strip()


def _table_rows(table: Tag) -> list[list[str]]:
    rows = []
    for tr in table.find_all("tr"):
        if tr.find_parent("table") is not table or _hidden(tr):
            continue
        cells = [
            _visible_text(cell)
            for cell in tr.find_all(["td", "th"], recursive=False)
            if not _hidden(cell)
        ]
        rows.append(cells)
    return rows


def _mark_hidden_by_stylesheet(soup: BeautifulSoup) -> None:
    """Mark elements that a <style> rule hides with a simple class or id selector."""
    for style in soup.find_all("style"):
        for match in HIDDEN_RULE.finditer(style.get_text()):
            for selector in match.group(1).split(","):
                selector = selector.strip()
                if SIMPLE_SELECTOR.match(selector):
                    try:
                        for tag in soup.select(selector):
                            tag["hidden"] = ""
                    except Exception:  # noqa: BLE001, S112 - soupsieve refuses odd selectors
                        continue


def html_to_builder(markup: bytes | str, builder: TextBuilder | None = None) -> TextBuilder:
    from bs4 import BeautifulSoup, NavigableString, Tag

    try:
        soup = BeautifulSoup(markup, "lxml")
    except Exception as exc:  # lxml refuses some hostile documents outright
        raise ParseError(f"The HTML cannot be read ({exc}).") from exc
    _mark_hidden_by_stylesheet(soup)
    builder = builder or TextBuilder()
    inline: list[str] = []

    def flush() -> None:
        text = "\n".join(SPACE.sub(" ", line).strip() for line in "".join(inline).split("\n"))
        builder.paragraph(re.sub(r"\n{2,}", "\n", text).strip())
        inline.clear()

    END = object()
    stack: list = [soup]
    while stack:
        node = stack.pop()
        if node is END:
            flush()
            continue
        if isinstance(node, Tag):
            name = node.name
            if name in SKIP or _hidden(node):
                continue
            if name in HEADINGS:
                flush()
                builder.heading(_visible_text(node), HEADINGS[name])
            elif name == "table":
                flush()
                builder.table(_table_rows(node))
            elif name == "pre":
                flush()
                builder.paragraph(node.get_text())
            elif name == "br":
                inline.append("\n")
            elif name in BLOCKS:
                flush()
                stack.append(END)
                stack.extend(reversed(node.contents))
            else:
                stack.extend(reversed(node.contents))
        elif isinstance(node, NavigableString) and type(node) is NavigableString:
            inline.append(str(node))  # comments, CDATA, doctype are subclasses: skipped
    flush()
    return builder


def parse_html(data: bytes) -> ParsedDocument:
    builder = html_to_builder(data)
    return builder.build()

"""PDF text layer, page by page, with pypdf; pages without a usable text layer go to OCR.

A page whose text layer has fewer than MIN_TEXT_CHARACTERS letters or digits (a scan, or a
scan with only a stamped page number) is rendered with pdftoppm and read by Tesseract; the
OCR text replaces the layer's when it holds more. Each page records whether it was OCR'd and
OCR's mean word confidence.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from pypdf import PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

from . import ocr
from .base import ParsedDocument, ParseError, join_pages

if TYPE_CHECKING:
    from collections.abc import Callable

    from pypdf import PageObject

logger = logging.getLogger(__name__)

MIN_TEXT_CHARACTERS = 20
PASSWORD = "The PDF is password-protected; upload an unencrypted copy."  # noqa: S105 - a message


def _usable(text: str) -> bool:
    return sum(1 for c in text if c.isalnum()) >= MIN_TEXT_CHARACTERS


def _page_size(page: PageObject) -> tuple[float, float]:
    try:
        box = page.mediabox
        return float(box.width), float(box.height)
    except Exception:  # noqa: BLE001 - a broken page box: assume US Letter
        return 612.0, 792.0


def _ocr_pages(
    data: bytes, reader: PdfReader, numbers: list[int], texts: list[str]
) -> dict[int, float | None]:
    """OCR the given 0-based pages in place in `texts`; returns page index -> confidence.

    A page that cannot be rendered or read is left as it was (logged), so one bad page does not
    lose the rest; if every page fails, the first reason is raised."""
    done: dict[int, float | None] = {}
    errors: list[ParseError] = []
    handle, path = tempfile.mkstemp(suffix=".pdf")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        for index in numbers:
            width, height = _page_size(reader.pages[index])
            try:
                image = ocr.render_pdf_page(path, index + 1, width_pt=width, height_pt=height)
                if ocr.nothing_to_read(image):
                    continue  # blank or only rules: keep its (empty) text layer
                result = ocr.ocr_image(image)
            except ParseError as exc:
                logger.warning("OCR of page %d failed: %s", index + 1, exc)
                errors.append(exc)
                continue
            layer = sum(1 for c in texts[index] if c.isalnum())
            if sum(1 for c in result.text if c.isalnum()) > layer:
                texts[index] = result.text
                done[index] = result.confidence
            # else OCR found less than the text layer had: keep the layer
    finally:
        Path(path).unlink()
    if errors and len(errors) == len(numbers):
        raise errors[0]
    return done


def parse_pdf(data: bytes, *, on_ocr: Callable[[], None] | None = None) -> ParsedDocument:
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            # Many PDFs are "encrypted" with an empty user password (print/copy restrictions).
            try:
                if not reader.decrypt(""):
                    raise ParseError(PASSWORD)
            except (FileNotDecryptedError, DependencyError, NotImplementedError) as exc:
                raise ParseError(PASSWORD) from exc
        page_texts = []
        for index, page in enumerate(reader.pages):
            try:
                page_texts.append(page.extract_text() or "")
            except Exception:  # one broken page must not lose the rest of the document
                logger.warning("could not extract text from page %d", index + 1, exc_info=True)
                page_texts.append("")
    except ParseError:
        raise
    except FileNotDecryptedError as exc:
        raise ParseError(PASSWORD) from exc
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ParseError(f"The PDF is damaged and cannot be read ({exc}).") from exc
    if not page_texts:
        raise ParseError("The PDF has no pages.")
    scanned = [i for i, text in enumerate(page_texts) if not _usable(text)]
    ocr_done: dict[int, float | None] = {}
    started = time.perf_counter()
    if scanned and ocr.ocr_available() and ocr.pdftoppm_path():
        if len(scanned) > ocr.max_pages():
            raise ocr.too_many_pages(len(scanned))
        if on_ocr is not None:
            on_ocr()
        ocr_done = _ocr_pages(data, reader, scanned, page_texts)
    elif scanned:
        logger.warning("%d page(s) without a text layer and no OCR installed", len(scanned))
    parsed = join_pages(page_texts)
    parsed.ocr_seconds = time.perf_counter() - started if scanned else 0.0
    parsed.pages = [
        replace(page, ocr=True, confidence=ocr_done[i]) if i in ocr_done else page
        for i, page in enumerate(parsed.pages)
    ]
    parsed.metadata["pages_without_text"] = str(sum(1 for t in page_texts if not t.strip()))
    parsed.metadata["pages_needing_ocr"] = str(len(scanned))
    parsed.metadata["ocr_available"] = "yes" if ocr.ocr_available() else "no"
    return parsed

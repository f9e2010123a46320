"""OCR with Debian's Tesseract (`tesseract-ocr` + `tesseract-ocr-eng`), run as a subprocess.

Tesseract's TSV output gives every recognised word with its confidence; the text is rebuilt
line by line and paragraph by paragraph from it, and the page's confidence is the mean over
its words. PDF pages are rendered for OCR by poppler's `pdftoppm` (`poppler-utils`). Both are
installed by `make ocr-deps` (run by install/test/run) and by the Dockerfile.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from .base import ParseError

INSTALL_HINT = "install tesseract-ocr and tesseract-ocr-eng (`make ocr-deps` as root)"


@dataclass(frozen=True)
class OcrResult:
    text: str
    confidence: float | None  # mean word confidence 0-100; None when no word was found
    words: int


def _setting(name: str, default: Any) -> Any:
    try:
        from django.conf import settings

        return getattr(settings, name, default)
    except Exception:  # noqa: BLE001 - usable without Django configured (scripts, unit tests)
        return default


def max_pages() -> int:
    return int(_setting("OCR_MAX_PAGES", 1000))


def too_many_pages(count: int) -> ParseError:
    return ParseError(
        f"{count} pages need OCR; one document may send at most {max_pages()} pages to OCR "
        "(OCR_MAX_PAGES). Split the file or raise the limit."
    )


def tesseract_path() -> str | None:
    return shutil.which("tesseract")


def pdftoppm_path() -> str | None:
    return shutil.which("pdftoppm")


def ocr_available() -> bool:
    return tesseract_path() is not None


def _parse_tsv(tsv: str) -> OcrResult:
    lines: dict[tuple[int, int, int], list[str]] = {}
    confidences: list[float] = []
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 12 or cols[0] != "5":
            continue
        word = cols[11].strip()
        try:
            conf = float(cols[10])
        except ValueError:
            continue
        if not word or conf < 0:
            continue
        key = (int(cols[2]), int(cols[3]), int(cols[4]))  # block, paragraph, line
        lines.setdefault(key, []).append(word)
        confidences.append(conf)
    paragraphs: list[str] = []
    previous: tuple[int, int] | None = None
    for (block, par, _line), words in lines.items():  # TSV rows come in reading order
        if (block, par) != previous:
            paragraphs.append("")
            previous = (block, par)
        paragraphs[-1] += ("\n" if paragraphs[-1] else "") + " ".join(words)
    mean = round(sum(confidences) / len(confidences), 1) if confidences else None
    return OcrResult(text="\n\n".join(paragraphs), confidence=mean, words=len(confidences))


def ocr_image(image: bytes, *, dpi: int | None = None) -> OcrResult:
    """OCR one page image (any format Leptonica reads: PNG, PNM, TIFF, JPEG)."""
    binary = tesseract_path()
    if binary is None:
        raise ParseError(f"OCR is not available on this server: {INSTALL_HINT}.")
    languages = str(_setting("OCR_LANGUAGES", "eng"))
    command = [binary, "stdin", "stdout", "-l", languages, "--psm", "3"]
    if dpi:
        command += ["--dpi", str(dpi)]
    env = dict(os.environ, OMP_THREAD_LIMIT="1")  # one thread per page: workers run in parallel
    try:
        done = subprocess.run(
            [*command, "tsv"],
            input=image,
            capture_output=True,
            timeout=int(_setting("OCR_PAGE_TIMEOUT", 180)),
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ParseError("OCR of a page took too long (OCR_PAGE_TIMEOUT) and was stopped.") from exc
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = message[-1] if message else f"exit status {done.returncode}"
        if "Failed loading language" in done.stderr.decode("utf-8", "replace"):
            detail = f"language data for {languages!r} is missing ({INSTALL_HINT})"
        raise ParseError(f"OCR failed: {detail}.")
    return _parse_tsv(done.stdout.decode("utf-8", "replace"))


# "P5", width, height, maxval, separated by whitespace or # comments, then one whitespace.
_GAP = rb"(?:\s|#[^\n]*\n)+"
_PGM_HEADER = re.compile(rb"P5" + _GAP + rb"(\d+)" + _GAP + rb"(\d+)" + _GAP + rb"(\d+)\s")
# On a rendered page, a pixel darker than this (of 255) is ink.
INK_LEVEL = 200
# Ink confined to this many pixel rows (or columns) is a rule, not text: at OCR_DPI a glyph of
# 6-point type is about 25 pixels tall, and Tesseract reads nothing a few pixels thin.
RULE_PIXELS = 4


def nothing_to_read(image: bytes) -> bool:
    """Whether a greyscale PGM page image (render_pdf_page's) is blank, or carries only thin
    horizontal or vertical rules: nothing Tesseract could read.

    Tesseract takes most of a second even on an empty page, and such pages are common: the
    backs of duplex scans, separator pages, a page holding only a footer rule. Anything else
    (another format, a header it cannot read, ink more than RULE_PIXELS thick in both
    directions) goes to OCR."""
    import numpy as np

    header = _PGM_HEADER.match(image)
    if header is None:
        return False
    width, height, maxval = (int(v) for v in header.groups())
    start = header.end()
    if maxval != 255 or not width or not height or len(image) < start + width * height:
        return False
    pixels = np.frombuffer(image, dtype=np.uint8, count=width * height, offset=start)
    page = pixels.reshape(height, width)
    # Darkest pixel of each row, then of each column (uint8 reductions: a few ms a page).
    if int(np.count_nonzero(page.min(axis=1) < INK_LEVEL)) <= RULE_PIXELS:
        return True
    return int(np.count_nonzero(page.min(axis=0) < INK_LEVEL)) <= RULE_PIXELS


def render_pdf_page(pdf_path: str, number: int, *, width_pt: float, height_pt: float) -> bytes:
    """Page `number` (1-based) of the PDF at `pdf_path` as a greyscale PGM image.

    Rendered at OCR_DPI (300), lowered for oversized pages so no side exceeds 5000 pixels.
    """
    binary = pdftoppm_path()
    if binary is None:
        raise ParseError("Cannot render scanned PDF pages for OCR: install poppler-utils.")
    dpi = int(_setting("OCR_DPI", 300))
    longest = max(width_pt, height_pt, 1.0)
    dpi = max(36, min(dpi, int(5000 * 72 / longest)))
    try:
        done = subprocess.run(
            [binary, "-f", str(number), "-l", str(number), "-r", str(dpi), "-gray", pdf_path],
            capture_output=True,
            timeout=int(_setting("OCR_PAGE_TIMEOUT", 180)),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ParseError(f"Rendering page {number} for OCR took too long.") from exc
    if done.returncode != 0 or not done.stdout:
        raise ParseError(f"Page {number} of the PDF cannot be rendered for OCR.")
    return done.stdout

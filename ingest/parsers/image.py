"""Images of pages (PNG, JPEG, TIFF; a multi-page TIFF is one page per frame), through OCR."""

from __future__ import annotations

import io
import time
import warnings
from dataclasses import replace
from typing import TYPE_CHECKING

from .base import ParsedDocument, ParseError, join_pages
from .ocr import max_pages, ocr_image, too_many_pages

if TYPE_CHECKING:
    from collections.abc import Callable


def parse_image(data: bytes, *, on_ocr: Callable[[], None] | None = None) -> ParsedDocument:
    from PIL import Image, ImageSequence, UnidentifiedImageError

    started = time.perf_counter()
    texts: list[str] = []
    confidences: list[float | None] = []
    try:
        with warnings.catch_warnings():
            # Pillow warns above MAX_IMAGE_PIXELS and raises at twice that (a pixel bomb).
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                frames = getattr(image, "n_frames", 1)
                if frames > max_pages():
                    raise too_many_pages(frames)
                if on_ocr is not None:
                    on_ocr()
                for frame in ImageSequence.Iterator(image):
                    dpi = frame.info.get("dpi")
                    page = frame.convert("L") if frame.mode not in ("L", "RGB") else frame.copy()
                    buffer = io.BytesIO()
                    page.save(buffer, format="PNG")
                    resolution = int(dpi[0]) if dpi and dpi[0] and dpi[0] >= 70 else 300
                    result = ocr_image(buffer.getvalue(), dpi=resolution)
                    texts.append(result.text)
                    confidences.append(result.confidence)
    except ParseError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ParseError(
            "The image is too large to process (pixel count above the safety limit)."
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ParseError(f"The image is damaged and cannot be read ({exc}).") from exc
    parsed = join_pages(texts)
    parsed.pages = [
        replace(page, ocr=True, confidence=conf)
        for page, conf in zip(parsed.pages, confidences, strict=True)
    ]
    parsed.ocr_seconds = time.perf_counter() - started
    return parsed

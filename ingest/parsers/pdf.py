"""PDF text layer, page by page, with pypdf."""

from __future__ import annotations

import io
import logging

from pypdf import PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

from .base import ParsedDocument, ParseError, join_pages

logger = logging.getLogger(__name__)


def parse_pdf(data: bytes) -> ParsedDocument:
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            # Many PDFs are "encrypted" with an empty user password (print/copy restrictions).
            try:
                if not reader.decrypt(""):
                    raise ParseError("The PDF is password-protected; upload an unencrypted copy.")
            except (FileNotDecryptedError, DependencyError, NotImplementedError) as exc:
                raise ParseError(
                    "The PDF is password-protected; upload an unencrypted copy."
                ) from exc
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
        raise ParseError("The PDF is password-protected; upload an unencrypted copy.") from exc
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ParseError(f"The PDF is damaged and cannot be read ({exc}).") from exc
    if not page_texts:
        raise ParseError("The PDF has no pages.")
    parsed = join_pages(page_texts)
    parsed.metadata["pages_without_text"] = str(sum(1 for t in page_texts if not t.strip()))
    return parsed

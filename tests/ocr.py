"""Tesseract for the OCR tests: a loud skip without it, a failure under CI=true."""

from __future__ import annotations

import os
import shutil

import pytest


def require_ocr() -> None:
    missing = [tool for tool in ("tesseract", "pdftoppm") if shutil.which(tool) is None]
    if not missing:
        return
    message = (
        f"{', '.join(missing)} missing: run `make ocr-deps` as root "
        "(apt-get install tesseract-ocr tesseract-ocr-eng poppler-utils)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail("OCR TESTS CANNOT RUN: " + message)
    pytest.skip("OCR TESTS SKIPPED: " + message)

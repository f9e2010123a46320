"""Headless Chromium for the browser tests (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def playwright():
    """`sync_playwright()`, or a loud skip (a failure under CI=true) without Chromium."""
    if not CHROMIUM.exists():
        message = (
            f"{CHROMIUM} is missing: run `make test` as root to apt-get it, or install chromium"
        )
        if os.environ.get("CI") == "true":
            pytest.fail("BROWSER TESTS CANNOT RUN: " + message)
        pytest.skip("BROWSER TESTS SKIPPED: " + message)
    from playwright.sync_api import sync_playwright

    return sync_playwright()


def launch(p):
    return p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)

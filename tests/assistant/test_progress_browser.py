"""Issue 3: the collection page's progress bar moves while a real Celery worker ingests, with
no reload, in real headless Chromium."""

import pytest

from tests import browser as browser_tools
from tests.factories import make_collection

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.slow]


def long_text(paragraphs: int) -> bytes:
    return "\n\n".join(
        f"Clause {i}. The supplier shall deliver batch {i} of the goods within {i % 30 + 1} days "
        f"of the order, and the buyer shall pay invoice {i * 7} within thirty days of delivery. "
        "Late payment bears interest at two per cent above the base rate. " * 3
        for i in range(paragraphs)
    ).encode()


def test_upload_then_watch_progress_reach_100_without_reloading(
    live_server, admin_user, celery_worker, monkeypatch, tmp_path
):
    make_collection("Supply contracts", "supply")
    big = tmp_path / "big.txt"
    big.write_bytes(long_text(400))  # a few hundred passages: pending when the page loads
    small = tmp_path / "small.txt"
    small.write_bytes(b"Deliveries are accepted on weekdays only.")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with browser_tools.playwright() as p:
        browser = browser_tools.launch(p)
        page = browser.new_page()
        page.set_default_timeout(180_000)
        try:
            page.goto(live_server.url + "/accounts/login/")
            page.fill("#id_username", "root-admin")
            page.fill("#id_password", "Correct-Horse-Battery-9")
            page.click("button[type=submit]")
            page.goto(live_server.url + "/collections/supply/")
            page.set_input_files("#id_files", [str(big), str(small)])
            page.click("#upload-button")
            page.wait_for_selector("#ingest-progress")
            assert "2 file(s) queued" in page.inner_text("ul.messages")
            navigations = []
            page.on("framenavigated", lambda frame: navigations.append(frame.url))
            first = int(page.get_attribute("#progress-bar", "value"))
            assert first < 100, "the worker finished before the page loaded; nothing to watch"
            page.wait_for_selector("#progress-bar[value='100']")
            assert navigations == [], "the page reloaded instead of updating itself"
            assert page.locator("#documents tr[data-status=ready]").count() == 2
            assert page.inner_text("[data-count=ready]") == "2"
            assert page.locator("#pending-note").is_hidden()
            page.screenshot(path=str(tmp_path / "progress.png"), full_page=True)
        finally:
            browser.close()

"""A compliance officer's journey in real headless Chromium: filter to one user's questions,
open one, read its passages, export the selection as CSV."""

import csv

import pytest

from assistant.services import question_ask
from audit.models import AuditEvent
from tests import browser as browser_tools
from tests.factories import grant, ingest_path, make_collection

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_officer_filters_opens_and_exports(
    live_server, django_user_model, officer, cuad_pdf, tmp_path, monkeypatch
):
    reader = django_user_model.objects.create_user(username="reader", password="Reader-Pass-2026!")
    other = django_user_model.objects.create_user(username="other", password="Other-Pass-2026!")
    collection = make_collection("Contracts", "contracts")
    ingest_path(collection, cuad_pdf)
    grant(collection, reader)
    grant(collection, other)
    question_ask(
        user=reader, collection=collection, question="What discount does the distributor get?", k=3
    )
    question_ask(user=other, collection=collection, question="Who owns the trademarks?", k=3)

    # Playwright runs an event loop in this thread; the ORM calls after it are still sync.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with browser_tools.playwright() as p:
        browser = browser_tools.launch(p)
        context = browser.new_context(accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(20_000)
        try:
            page.goto(live_server.url + "/accounts/login/")
            page.fill("#id_username", "olivia")
            page.fill("#id_password", "Officer-Pass-2026!")
            page.click("button[type=submit]")
            page.click("text=Audit trail")
            page.fill("#f-user", "reader")
            page.select_option("#f-type", "question.answered")
            page.click("#filter-button")
            table = page.inner_text("#audit-entries")
            assert "What discount does the distributor get?" in table
            assert "Who owns the trademarks?" not in table

            page.click("#audit-entries >> text=What discount does the distributor get?")
            page.wait_for_selector("#replay-passages")
            passages = page.inner_text("#replay-passages")
            assert "LUCIDINC_04_15_2011-EX-10.9-DISTRIBUTOR AGREEMENT.PDF" in passages
            assert "thirty (30) per cent" in passages
            assert "page 5" in passages

            page.go_back()
            with page.expect_download() as download:
                page.click("#export-csv")
            saved = tmp_path / "export.csv"
            download.value.save_as(saved)
        finally:
            browser.close()
    rows = list(csv.DictReader(saved.open(encoding="utf-8")))
    assert [r["actor"] for r in rows] == ["reader"]
    assert rows[0]["event_type"] == "question.answered"
    export = AuditEvent.objects.get(event_type="audit.exported")
    assert export.actor == officer
    assert export.payload["filters"]["user"] == "reader"

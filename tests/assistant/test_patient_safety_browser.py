"""The two unsafe answers of issue 23, asked as a ward's new user would, in real headless
Chromium: "allergic to anything" for a patient with recorded allergies, and a first name two
patients share (while a third patient holds the collection's most recent blood pressure)."""

import pytest

from tests import browser as browser_tools
from tests.assistant.test_patient_safety import ABEL, ABEL_ALLERGIES, RECORDS, bundle
from tests.factories import grant, ingest_bytes, ingest_path, make_collection

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_a_clinician_asks_in_the_portal(live_server, plain_user, settings, monkeypatch, tmp_path):
    settings.LLM_BACKEND = "extractive"
    collection = make_collection("Ward 7 records", "ward7")
    for path in (f"fhir/{ABEL}.json", f"text/{ABEL}.txt"):
        assert ingest_path(collection, RECORDS / path).status == "ready"
    for name, given, family, birth, bp in (
        ("bergstrom", "Vincenzo126", "Bergstrom287", "1958-03-02", ("2019-04-01", 141, 92)),
        ("kling", "Vincenzo33", "Kling921", "1971-11-20", ("2018-06-12", 118, 76)),
        ("ortiz", "Marta55", "Ortiz12", "1980-01-05", ("2024-01-09", 99, 61)),
    ):
        assert (
            ingest_bytes(collection, f"{name}.json", bundle(given, family, birth, bp=bp)).status
            == "ready"
        )
    grant(collection, plain_user)
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with browser_tools.playwright() as p:
        browser = browser_tools.launch(p)
        page = browser.new_page()
        page.set_default_timeout(60_000)
        try:
            page.goto(live_server.url + "/accounts/login/")
            page.fill("#id_username", "reader")
            page.fill("#id_password", "Reader-Pass-2026!")
            page.click("button[type=submit]")

            def ask(question: str, shot: str) -> str:
                page.goto(live_server.url + "/")
                page.fill("#id_home_question", question)
                page.keyboard.press("Tab")
                page.click("#ask-button")
                page.wait_for_selector("#stream[data-state=done]")
                page.screenshot(path=str(tmp_path / shot), full_page=True)
                return page.inner_text("#answer")

            allergies = ask("Is Abel allergic to anything?", "allergies.png")
            assert "Abel832 Muller251 (born 2000-06-02):" in allergies, allergies
            assert all(a.lower() in allergies.lower() for a in ABEL_ALLERGIES), allergies
            assert "Quoted from the patient's record" in page.inner_text("body")
            asked_back = ask("What was Vincenzo's most recent blood pressure?", "vincenzo.png")
            assert "Which patient do you mean?" in asked_back
            assert "Vincenzo126 Bergstrom287 (born 1958-03-02)" in asked_back
            assert "Vincenzo33 Kling921 (born 1971-11-20)" in asked_back
            assert "99/61" not in page.inner_text("body")
        finally:
            browser.close()

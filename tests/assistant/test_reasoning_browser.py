"""Issue 20 in real headless Chromium: a reasoning model (DeepSeek-R1 distill behind the real
llama.cpp server, reasoning parser on) thinks, the portal says so and for how long, and the
answer that replaces the stream is the answer, never the thinking."""

import pytest

from assistant.models import Answer
from audit.models import AuditEvent
from tests import browser as browser_tools
from tests.factories import grant, ingest_bytes, make_collection
from tests.model_servers import ANSWER

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

LICENCE = (
    b"Section 4. Payment terms.\nThe licensee shall pay a royalty of seven percent of net "
    b"sales, payable quarterly.\n"
)


def test_the_portal_shows_thinking_then_the_answer(
    live_server, plain_user, use_family, monkeypatch, tmp_path
):
    use_family("r1")
    collection = make_collection("Licences", "licences")
    ingest_bytes(collection, "licence.txt", LICENCE)
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
            page.fill("#id_home_question", "What royalty does the licensee pay?")
            page.keyboard.press("Tab")
            page.click("#ask-button")
            page.wait_for_selector("#stream[data-thinking]")
            page.wait_for_selector("#stream[data-state=done]")
            # The thinking was announced and timed (data-thinking, data-thought-seconds).
            assert page.get_attribute("#stream", "data-thinking") == "done"
            assert float(page.get_attribute("#stream", "data-thought-seconds") or -1) >= 0
            page.screenshot(path=str(tmp_path / "thought.png"), full_page=True)
            assert ANSWER in page.inner_text("#answer")
        finally:
            browser.close()
    answer = Answer.objects.get()
    thought = AuditEvent.objects.get(payload__answer_id=answer.id).payload["reasoning"]["text"]
    assert answer.text == ANSWER and thought not in answer.text

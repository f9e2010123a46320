"""A user's journey in real headless Chromium: sign in, ask, watch the answer stream in from
the real llama.cpp server, click a citation, land on the highlighted passage."""

import pytest

from tests import browser as browser_tools
from tests.factories import grant, ingest_path, make_collection

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_ask_watch_stream_and_open_the_cited_passage(
    live_server, plain_user, cuad_pdf, use_llamacpp, monkeypatch, tmp_path
):
    collection = make_collection("Distributor contracts", "contracts")
    ingest_path(collection, cuad_pdf)
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
            page.fill(
                "#id_home_question", "What discount does the distributor get on the price list?"
            )
            page.keyboard.press("Tab")
            page.click("#ask-button")
            # Tokens arrive while the model writes, before the checked answer replaces them.
            # (Selectors, not wait_for_function: the page's CSP forbids evaluating strings.)
            page.wait_for_selector(
                "#stream[data-tokens]:not([data-tokens='0']), #stream[data-state=done]"
            )
            page.wait_for_selector("#stream[data-state=done]")
            assert int(page.get_attribute("#stream", "data-tokens") or 0) > 0
            answer = page.inner_text("#answer")
            assert "[" in answer
            page.screenshot(path=str(tmp_path / "streamed.png"), full_page=True)
            page.click("#answer a.cite >> nth=0")
            page.wait_for_selector("#passage")
            info = page.inner_text("#passage-info")
            assert "page" in info
            assert "LUCIDINC" in page.inner_text("h1")
            assert page.locator("#passage").is_visible()
        finally:
            browser.close()

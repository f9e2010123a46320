"""Issue 19, "The audit trail records what the user saw, always".

Tokens reach the user before the answer is checked and stored. Attacks on that gap:

- the model writes a figure no passage holds; the checks replace the answer, and the audit
  must still hold the text the user watched being written, and say it was replaced and why;
- the database goes away (its session killed, PostgreSQL stopped) once the first token has been
  sent: an entry naming the question, the passages and the user must already be committed, the
  stream must end by withdrawing the answer, and nothing may claim an answer was given.

Real PostgreSQL (stopped and restarted), the real llama.cpp server, the real views.
"""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from assistant import llm, services
from assistant.api.tokens import token_create
from assistant.models import Answer, Question
from audit.models import AuditEvent
from audit.verify import audit_verify
from tests import browser as browser_tools
from tests.factories import grant, ingest_bytes, make_collection
from tests.faults import (
    ScriptedModel,
    committed_rows,
    kill_this_threads_session,
    postgres_stopped_on_demand,
    read_events,
    tokens,
)

pytestmark = pytest.mark.django_db(transaction=True)

LICENCE = (
    b"Section 4. Fees.\nThe licensee pays a yearly fee of 100 dollars, due every January.\n\n"
    b"Section 9. Term.\nThis licence runs for five years and renews for one-year terms unless "
    b"either party objects in writing.\n"
)
FEE = "What yearly fee does the licensee pay?"
TERM = "How long does the licence run?"


@pytest.fixture
def licence(plain_user):
    collection = make_collection("Licences", "licences")
    grant(collection, plain_user)
    assert ingest_bytes(collection, "licence.txt", LICENCE).status == "ready"
    return collection


@pytest.fixture
def scripted(settings):
    """A model that writes what the test says (see tests/faults.py)."""
    model = ScriptedModel()
    settings.LLM_BACKEND = "openai"
    settings.LLM_BASE_URL = model.url
    settings.LLM_MODEL = "scripted"
    llm.get_llm.cache_clear()
    yield model
    llm.get_llm.cache_clear()
    model.close()


def _ask_portal(client, user, question: str):
    client.force_login(user)
    return client.post(
        reverse("portal:ask_stream"), {"collection": "licences", "question": question}
    )


def _ask_api(client, user, question: str):
    return client.post(
        "/api/v1/ask",
        {"collection": "licences", "question": question, "stream": "ndjson"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token_create(user=user, name='t').key}",
    )


def _types() -> list[str]:
    """The question entries of the trail, as another session sees them (committed)."""
    rows = committed_rows(
        "SELECT event_type FROM assistant_auditevent WHERE event_type LIKE 'question.%' "
        "ORDER BY seq"
    )
    return [t for (t,) in rows]


def _questions():
    return AuditEvent.objects.filter(event_type__startswith="question.").order_by("seq")


def test_a_draft_replaced_by_the_checks_is_audited_as_it_was_shown(
    client, licence, plain_user, scripted
):
    """The user watched "999999 dollars" being written; the audit held only "100 dollars"."""
    scripted.deltas = ["The licensee pays ", "999999", " dollars a year [1]."]
    events, error = read_events(_ask_portal(client, plain_user, FEE), on_first_token=None)
    assert error is None
    shown = tokens(events)
    assert "999999" in shown
    assert events[-1][0] == "done"
    entry = AuditEvent.objects.get(event_type="question.answered")
    assert "100 dollars" in entry.payload["answer"] and "999999" not in entry.payload["answer"]
    streamed = entry.payload["streamed"]
    assert streamed["text"] == shown  # exactly what was sent, beside the final answer
    assert streamed["replaced"] is True
    assert "999999" in streamed["reason"]
    assert entry.flagged  # a user saw text that is not the answer: for review


def test_the_stream_says_the_text_is_a_draft_until_it_is_checked(
    client, licence, plain_user, scripted
):
    scripted.deltas = ["The licensee pays ", "999999", " dollars a year [1]."]
    for ask, ndjson in [(_ask_portal, False), (_ask_api, True)]:
        events, error = read_events(
            ask(client, plain_user, FEE), ndjson=ndjson, on_first_token=None
        )
        assert error is None
        names = [name for name, _ in events]
        # The notice comes before the first token; each token is marked as draft text.
        assert names.index("draft") < names.index("token")
        notice = dict(events)["draft"]["notice"]
        assert "draft" in notice.lower() and "checked" in notice.lower()
        assert all(data["draft"] is True for name, data in events if name == "token")
        done = events[-1][1]
        assert events[-1][0] == "done"
        assert done["draft"]["replaced"] is True and "999999" in done["draft"]["reason"]
    page = client.get(reverse("portal:home")).content.decode()
    assert 'id="stream-draft"' in page  # where the page shows the notice


def test_the_question_passages_and_user_are_committed_before_the_first_token(
    client, licence, plain_user, use_llamacpp
):
    seen: list[list[tuple]] = []

    def first_token() -> None:
        seen.append(
            committed_rows(
                "SELECT id, event_type, actor_username, payload::text FROM assistant_auditevent"
                " WHERE event_type LIKE 'question.%'"
            )
        )

    events, error = read_events(_ask_portal(client, plain_user, TERM), on_first_token=first_token)
    assert error is None and seen, "the model streamed no token"
    [(opening_id, kind, actor, payload)] = seen[0]
    assert (kind, actor) == ("question.asked", "reader")
    payload = json.loads(payload)
    assert payload["question"] == TERM
    assert [p["document"] for p in payload["passages"]] == ["licence.txt"]
    assert all(len(p["text_sha256"]) == 64 for p in payload["passages"])
    assert events[-1][0] == "done"
    closing = AuditEvent.objects.get(event_type__in=["question.answered", "question.refused"])
    assert closing.payload["opening"]["id"] == opening_id
    assert (
        closing.payload["opening"]["payload_hash"]
        == AuditEvent.objects.get(pk=opening_id).payload_hash
    )
    assert closing.payload["streamed"]["text"] == tokens(events)


@pytest.mark.parametrize("surface", ["portal", "api"])
def test_a_session_killed_after_the_first_token_withdraws_the_answer(
    client, licence, plain_user, use_llamacpp, surface
):
    ask = _ask_portal if surface == "portal" else _ask_api
    events, error = read_events(
        ask(client, plain_user, TERM),
        ndjson=surface == "api",
        on_first_token=kill_this_threads_session,
    )
    assert error is None, f"the stream broke off instead of ending: {error!r}"
    names = [name for name, _ in events]
    assert "token" in names and "done" not in names
    assert names[-1] == "withdrawn"
    assert "withdrawn" in events[-1][1]["message"].lower()
    # Nothing claims an answer was given...
    assert not Question.objects.exists() and not Answer.objects.exists()
    # ...and the trail says what was shown: the opening entry, closed by the withdrawal
    # (written on a new session: the server is still up).
    assert _types() == ["question.asked", "question.withdrawn"]
    opening, withdrawal = _questions()
    assert withdrawal.payload["opening"]["id"] == opening.pk
    assert withdrawal.payload["streamed"]["text"] == tokens(events)
    assert withdrawal.flagged
    assert audit_verify().ok


def test_postgres_stopped_after_the_first_token_withdraws_the_answer(
    client, licence, plain_user, use_llamacpp
):
    with postgres_stopped_on_demand() as stop:
        events, error = read_events(_ask_portal(client, plain_user, TERM), on_first_token=stop)
    assert error is None, f"the stream broke off instead of ending: {error!r}"
    names = [name for name, _ in events]
    assert "token" in names and "done" not in names and names[-1] == "withdrawn"
    assert "withdrawn" in events[-1][1]["message"].lower()
    assert not Question.objects.exists() and not Answer.objects.exists()
    # The opening entry was committed before the first token: the question, the passages
    # and the user are on record although nothing else could be written.
    [opening] = _questions()
    assert opening.event_type == "question.asked" and opening.actor_username == "reader"
    assert opening.payload["question"] == TERM
    assert audit_verify().ok


@pytest.mark.browser
def test_the_page_replaces_the_draft_with_the_withdrawal(
    live_server, licence, plain_user, use_llamacpp, monkeypatch
):
    """In real Chromium: the draft is labelled while it streams and, when the answer cannot be
    recorded, replaced by the withdrawal; the page never shows it as an answer."""
    real = services.get_llm()
    assert real is not None

    class KillAfterFirstToken:
        backend, model = real.backend, real.model

        def prepare(self, **kwargs):
            return real.prepare(**kwargs)

        def stream(self, request, outcome):
            for n, piece in enumerate(real.stream(request, outcome)):
                if n == 1:  # the first token was sent and the view came back for more
                    kill_this_threads_session()
                yield piece

    monkeypatch.setattr(services, "get_llm", KillAfterFirstToken)
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
            page.fill("#id_home_question", TERM)
            page.click("#ask-button")
            page.wait_for_selector("#stream[data-state=withdrawn]")
            assert int(page.get_attribute("#stream", "data-tokens") or 0) > 0
            text = page.inner_text("#stream-text")
            assert "withdrawn" in text.lower()
            assert not page.locator("#answer").count()  # no answer was rendered
            assert not page.locator("#stream-draft").is_visible()
        finally:
            browser.close()
    assert not Answer.objects.exists()

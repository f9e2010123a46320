"""Issue 20: the open models customers serve, one test per family, against real llama.cpp
servers with each family's chat template (tests/model_servers.py): Llama 3, Mistral Instruct
(whose template refuses a system message), DeepSeek-R1 distills with the server's reasoning
parser on and off, and Qwen (ChatML) opening its own <think> block. The 270M model is held to
each family's output by a grammar on the server; the product code is the one vLLM gets.

Each checks that the answer streamed, stored and audited is the answer and never the
reasoning, that the reasoning is audited in a field of its own, that citations resolve, that
the request fitted the server's window, and that stopping keeps the partial answer.
"""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from assistant.models import Answer
from assistant.services import question_ask, question_ask_stream
from audit.models import AuditEvent
from tests.factories import grant, ingest_bytes, make_collection
from tests.model_servers import ANSWER, FAMILIES, FAMILY_CTX, RecordingProxy, rendered

pytestmark = pytest.mark.django_db

LICENCE = (
    b"Section 4. Payment terms.\nThe licensee shall pay a royalty of seven percent of net "
    b"sales, payable quarterly.\n\nSection 9. Term.\nThis licence runs for five years and renews "
    b"for one-year terms unless either party objects in writing.\n"
)
QUESTION = "What royalty does the licensee pay?"


@pytest.fixture
def licence(plain_user):
    collection = make_collection("Licences", "licences")
    grant(collection, plain_user)
    assert ingest_bytes(collection, "licence.txt", LICENCE).status == "ready"
    return collection


def _sse(client) -> list[tuple[str, dict]]:
    response = client.post(
        reverse("portal:ask_stream"), {"collection": "licences", "question": QUESTION}
    )
    body = b"".join(response.streaming_content).decode()
    events = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def _answered_over_the_portal(client, plain_user, name: str, proxy: RecordingProxy) -> Answer:
    """Ask through the portal's stream; check what was streamed, stored, audited and cited."""
    client.force_login(plain_user)
    events = _sse(client)
    names = [n for n, _ in events]
    tokens = "".join(d["text"] for n, d in events if n == "token")
    assert names[0] == "passages" and names[-1] == "done"
    assert "reset" not in names
    # The answer is streamed, nothing else: no reasoning reaches the user.
    assert tokens == ANSWER, tokens
    if FAMILIES[name].thinks:
        assert names.index("thinking") < names.index("thought") < names.index("token")
        assert next(d for n, d in events if n == "thought")["seconds"] >= 0
    else:
        assert "thinking" not in names
    answer = Answer.objects.get(question_id=events[-1][1]["question_id"])
    assert answer.text == ANSWER and answer.backend == "openai"
    assert answer.model == FAMILIES[name].alias and not answer.fallback_reason
    payload = AuditEvent.objects.get(payload__answer_id=answer.id).payload
    assert payload["answer"] == ANSWER
    call = payload["model_call"]
    assert call["model_reported"] == FAMILIES[name].alias
    assert call["served_model"]["id"] == FAMILIES[name].alias
    assert call["served_model"]["server"].startswith("llama.cpp")
    assert call["context_tokens"] == FAMILY_CTX and call["finish_reason"] == "stop"
    if FAMILIES[name].thinks:
        thought = payload["reasoning"]["text"]
        assert thought and set(thought) <= set("abcdefghijklmnopqrstuvwxyz \n")
        assert thought not in answer.text and payload["reasoning"]["seconds"] >= 0
    else:
        assert payload["reasoning"] is None
    # The request fitted the window with room for the answer, by the server's own count.
    sent = proxy.chat_requests()[-1].body
    _, tokens = rendered(proxy.url, sent["messages"])
    assert len(tokens) <= call["prompt_tokens"]  # Attest counts generously
    assert len(tokens) + sent["max_tokens"] <= FAMILY_CTX
    # Citations resolve: [1] is the passage holding the royalty, and it opens in the viewer.
    cited = answer.citations.get(n=1)
    assert cited.cited and "seven percent" in cited.text
    assert (
        f'href="/documents/{cited.document_id}/?chunk={cited.chunk_id}#passage"'
        in (events[-1][1]["html"])
    )
    page = client.get(
        reverse("portal:document", args=[cited.document_id]), {"chunk": cited.chunk_id}
    )
    assert page.status_code == 200 and "seven percent" in page.content.decode()
    return answer


def _stopped(plain_user, collection, name: str) -> None:
    """Stop the answer while the model thinks (reasoning families) or after its first token."""
    stream = question_ask_stream(user=plain_user, collection=collection, question=QUESTION, k=3)
    wanted = "thinking" if FAMILIES[name].thinks else "token"
    for event in stream:
        if event["type"] == wanted:
            break
    stream.close()
    answer = Answer.objects.order_by("-id").first()
    assert answer.stopped and "Stopped by the user" in answer.fallback_reason
    payload = AuditEvent.objects.get(payload__answer_id=answer.id).payload
    assert payload["stopped"] is True and payload["answer"] == answer.text
    if FAMILIES[name].thinks:
        assert answer.text == ""  # stopped while thinking: nothing of the reasoning is shown
        assert payload["reasoning"] is not None


def test_llama3_instruct_answers_and_stops(client, plain_user, licence, use_family):
    proxy = use_family("llama3")
    _answered_over_the_portal(client, plain_user, "llama3", proxy)
    assert [r.body["messages"][0]["role"] for r in proxy.chat_requests()] == ["system"]
    assert proxy.chat_requests()[0].body["temperature"] == 0
    assert "stop" not in proxy.chat_requests()[0].body  # the template's end of turn ends it
    _stopped(plain_user, licence, "llama3")


def test_mistral_template_refusing_a_system_message_is_folded_once(
    client, plain_user, licence, use_family
):
    proxy = use_family("mistral")
    answer = _answered_over_the_portal(client, plain_user, "mistral", proxy)
    # The template refused the system message once; the instructions then went in the user turn.
    first, second = proxy.chat_requests()
    assert (first.status, second.status) == (400, 200)
    assert [m["role"] for m in second.body["messages"]] == ["user"]
    assert second.body["messages"][0]["content"].startswith("Instructions: You are Attest")
    payload = AuditEvent.objects.get(payload__answer_id=answer.id).payload
    assert payload["model_call"]["instructions_as"] == "user"
    # Detected once: the next question goes straight to the user turn.
    again = question_ask(user=plain_user, collection=licence, question=QUESTION, k=3)
    assert again.text == ANSWER
    assert [r.status for r in proxy.chat_requests()] == [400, 200, 200]
    _stopped(plain_user, licence, "mistral")
    assert all(r.status == 200 for r in proxy.chat_requests()[2:])


def test_deepseek_r1_distill_with_reasoning_parser(client, plain_user, licence, use_family):
    proxy = use_family("r1")
    _answered_over_the_portal(client, plain_user, "r1", proxy)
    _stopped(plain_user, licence, "r1")


def test_deepseek_r1_distill_without_reasoning_parser(
    client, plain_user, licence, use_family, settings
):
    """The template opened <think> in the prompt, so `content` starts inside the block with no
    opening tag: LLM_THINKING=auto reads the R1 name and keeps everything before </think>."""
    proxy = use_family("r1-no-parser")
    _answered_over_the_portal(client, plain_user, "r1-no-parser", proxy)
    _stopped(plain_user, licence, "r1-no-parser")
    # Out of tokens while thinking: the extractive answer, with that reason.
    settings.LLM_MAX_TOKENS = 4
    short = question_ask(user=plain_user, collection=licence, question=QUESTION, k=3)
    assert short.backend == "extractive" and "seven percent" in short.text
    assert "thinking and wrote no answer" in short.fallback_reason
    payload = AuditEvent.objects.get(payload__answer_id=short.id).payload
    assert payload["model_call"]["finish_reason"] == "length"
    assert payload["reasoning"]["text"] and payload["reasoning"]["text"] not in short.text


def test_qwen_chatml_with_its_own_think_block(client, plain_user, licence, use_family):
    proxy = use_family("qwen")
    _answered_over_the_portal(client, plain_user, "qwen", proxy)
    _stopped(plain_user, licence, "qwen")

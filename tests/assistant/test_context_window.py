"""Issue 20: passages, history and instructions fit the model's window with room for the
answer, on a real llama.cpp server that reports a 1,024-token window in /v1/models. The
lowest-ranked passages are dropped and recorded; the server never refuses a request for
length. Also the reading of reasoning blocks (assistant/reasoning.py), piece by piece."""

from __future__ import annotations

import pytest

from assistant.reasoning import Piece, ThinkSplitter, reasoning_model, thinking_mode
from assistant.services import question_ask
from audit.models import AuditEvent
from tests.factories import grant, ingest_bytes, make_collection
from tests.model_servers import FAMILY_CTX, rendered

TOPICS = ["reports", "audits", "late payment", "taxes", "currency", "termination"]


def _section(n: int, topic: str) -> str:
    filler = (
        f"The licensee keeps records of {topic} for each quarter and sends them to the licensor "
        f"within thirty days. Disputes about {topic} go to the committee named in Schedule {n}. "
    )
    return (
        f"Section {n}. Royalties and {topic}.\n"
        "The licensee pays a royalty of seven percent of net sales. " + filler * 6
    )


@pytest.mark.django_db
def test_passages_that_do_not_fit_the_window_are_dropped_lowest_ranked_first(
    plain_user, use_family, settings
):
    proxy = use_family("llama3")
    settings.LLM_MAX_TOKENS = 128
    collection = make_collection("Long licences", "long")
    grant(collection, plain_user)
    text = "\n\n".join(_section(n, topic) for n, topic in enumerate(TOPICS, start=1))
    assert ingest_bytes(collection, "licence.txt", text.encode()).status == "ready"

    question = "What royalty does the licensee pay?"
    answer = question_ask(user=plain_user, collection=collection, question=question, k=5)
    call = AuditEvent.objects.get(payload__answer_id=answer.id).payload["model_call"]
    assert call["context_tokens"] == FAMILY_CTX
    dropped = call["passages_dropped"]
    kept = call["passages_sent"]
    assert dropped and kept >= 1, call
    # The lowest-ranked go first: the passages sent are 1..kept, the dropped ones after them.
    assert dropped == list(range(kept + 1, kept + len(dropped) + 1))
    assert [d["n"] for d in call["dropped_passages"]] == dropped
    assert all(d["chunk_id"] for d in call["dropped_passages"])
    # Only what the model saw is shown and cited.
    assert answer.citations.count() == kept
    assert answer.backend == "openai" and answer.citations.filter(n=1, cited=True).exists()
    # Nothing refused for length, and by the server's own count the request fitted.
    assert [r.status for r in proxy.chat_requests()] == [200]
    sent = proxy.chat_requests()[0].body
    _, tokens = rendered(proxy.url, sent["messages"])
    assert len(tokens) + sent["max_tokens"] <= FAMILY_CTX
    assert sent["messages"][-1]["content"].count("<passage>") == kept

    # A follow-up carries the earlier turn only while it leaves room for the best passage.
    follow = question_ask(
        user=plain_user,
        collection=collection,
        question="And how is it paid?",
        k=5,
        follows=answer.question,
    )
    sent = proxy.chat_requests()[-1].body
    _, tokens = rendered(proxy.url, sent["messages"])
    assert proxy.chat_requests()[-1].status == 200
    assert len(tokens) + sent["max_tokens"] <= FAMILY_CTX
    payload = AuditEvent.objects.get(payload__answer_id=follow.id).payload
    assert payload["model_call"]["history_sent"] == (len(sent["messages"]) == 4)


def _split(mode: str, *deltas: str, reasoning_field: str = "") -> list[Piece]:
    splitter = ThinkSplitter(mode)
    pieces = splitter.reasoning_field(reasoning_field) if reasoning_field else []
    for delta in deltas:
        pieces += splitter.content(delta)
    return pieces + splitter.finish()


def _joined(pieces: list[Piece], kind: str) -> str:
    return "".join(p.text for p in pieces if p.kind == kind)


def test_a_think_block_is_reasoning_however_the_stream_cuts_it():
    deltas = ["<th", "ink>\nweigh ", "the clause</th", "ink>\n", "\nSeven percent [1]."]
    pieces = _split("tags", *deltas)
    assert _joined(pieces, "reasoning").strip() == "weigh the clause"
    assert _joined(pieces, "answer") == "Seven percent [1]."
    # Opened by the template in the prompt: no opening tag in the reply.
    pieces = _split("open", "weigh the", " clause\n</think>\n\nSeven", " percent [1].")
    assert _joined(pieces, "reasoning").strip() == "weigh the clause"
    assert _joined(pieces, "answer") == "Seven percent [1]."


def test_a_close_tag_without_an_open_one_takes_the_shown_text_back():
    pieces = _split("tags", "weigh the clause", "\n</think>\n\nSeven percent [1].")
    kinds = [p.kind for p in pieces]
    assert kinds.index("retract") < kinds.index("reasoning")
    after = pieces[kinds.index("retract") :]
    assert _joined(after, "reasoning").strip() == "weigh the clause"
    assert _joined(after, "answer") == "Seven percent [1]."


def test_the_servers_reasoning_field_is_never_answer_and_plain_text_is_never_reasoning():
    pieces = _split("open", "Seven percent [1].", reasoning_field="weigh the clause")
    assert _joined(pieces, "reasoning") == "weigh the clause"
    assert _joined(pieces, "answer") == "Seven percent [1]."
    assert _joined(_split("tags", "Seven percent [1]."), "answer") == "Seven percent [1]."
    assert _joined(_split("off", "<think>x</think>y"), "answer") == "<think>x</think>y"
    # A model that thinks first and never closes its block wrote no answer.
    assert _joined(_split("open", "weigh the clause"), "answer") == ""


def test_reasoning_models_are_known_by_name():
    for name in ("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "deepseek-r1", "Qwen/QwQ-32B"):
        assert reasoning_model(name) and thinking_mode("auto", name) == "open"
    for name in ("meta-llama/Llama-3.1-8B-Instruct", "mistralai/Mixtral-8x7B-Instruct-v0.1"):
        assert not reasoning_model(name) and thinking_mode("auto", name) == "tags"
    assert thinking_mode("off", "deepseek-r1") == "off"


def test_the_window_and_revision_are_read_from_what_vllm_and_llamacpp_report():
    from assistant import model_server

    # Entries of /v1/models as vLLM 0.11 and llama.cpp write them.
    vllm = {"id": "r1", "object": "model", "root": "/models/r1", "max_model_len": 16384}
    llama = {"id": "gemma", "meta": {"n_ctx": 4096, "n_ctx_train": 32768}}
    assert model_server._window(vllm) == 16384
    assert model_server._window(llama) == 4096
    assert model_server._window({"id": "x", "context_length": 8192}) == 8192
    assert model_server._window({"id": "x"}) == 0
    root = "/root/.cache/huggingface/hub/models--deepseek-ai--R1/snapshots/" + "a1" * 20
    assert model_server._SNAPSHOT.search(root).group(1) == "a1" * 20

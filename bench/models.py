"""Answer latency, first-token time with and without thinking, and context fitting, against
the model-family llama.cpp servers the tests use (tests/model_servers.py).

    .venv/bin/python bench/models.py [--questions 5]

Uses a scratch embedded PostgreSQL (or DATABASE_URL). Each family is the packaged Gemma 3 270M
behind that family's chat template, held by a grammar to the family's output (a reasoning
block of 40 to 120 characters, then the same cited answer), so the figures measure what Attest
adds around a model and how a reasoning block delays the answer, not a real R1's speed.
Prints, per family, medians over the questions:
- first output: the question to the model's first token of any kind (thinking or answer);
- answer start: the question to the answer's first token (what the user waits for);
- thinking: the seconds the portal shows ("thought for");
- done: the question to the checked, stored answer;
and for context fitting: the prompt's fit on a 1,024-token window (passages sent and dropped,
counted prompt tokens) and the time `prepare` takes cold (server described and counted) and
warm (cached).
"""

from __future__ import annotations

import argparse
import statistics
import time

from _scratch import machine, setup_django

LICENCE = (
    "Section 4. Payment terms.\nThe licensee shall pay a royalty of seven percent of net "
    "sales, payable quarterly.\n\nSection 9. Term.\nThis licence runs for five years and renews "
    "for one-year terms unless either party objects in writing.\n"
)
QUESTION = "What royalty does the licensee pay?"


def use(name: str, url: str) -> None:
    from django.conf import settings

    from assistant import llm, model_server
    from tests.model_servers import FAMILIES

    settings.LLM_BACKEND = "openai"
    settings.LLM_BASE_URL = url
    settings.LLM_MODEL = FAMILIES[name].alias
    settings.LLM_MAX_TOKENS = 0
    llm.get_llm.cache_clear()
    model_server.forget()


def timed(collection, question: str, k: int) -> dict[str, float]:
    from assistant.services import question_ask_stream
    from audit.models import AuditEvent

    started = time.perf_counter()
    marks: dict[str, float] = {}
    for event in question_ask_stream(user=None, collection=collection, question=question, k=k):
        now = (time.perf_counter() - started) * 1000
        if event["type"] in {"thinking", "token"}:
            marks.setdefault("first", now)
        if event["type"] == "token":
            marks.setdefault("answer", now)
        if event["type"] == "thought":
            marks["thought"] = event["seconds"] * 1000
        if event["type"] == "done":
            marks["done"] = now
            marks["ok"] = float(event["answer"].backend == "openai")
            entry = AuditEvent.objects.get(payload__answer_id=event["answer"].id).payload
            if entry["reasoning"]:
                marks["chars"] = entry["reasoning"]["chars"]
    return marks


def bench_families(servers: dict[str, str], collection, questions: int) -> None:
    for name, url in servers.items():
        use(name, url)
        timed(collection, QUESTION, 3)  # warm: server described, prompt cached
        runs = [timed(collection, QUESTION, 3) for _ in range(questions)]

        def med(key: str, runs: list[dict[str, float]] = runs, unit: str = " ms") -> str:
            values = [r[key] for r in runs if key in r]
            return f"{statistics.median(values):.0f}{unit}" if values else "-"

        answered = sum(r.get("ok", 0) for r in runs)
        print(
            f"{name:14s} first output {med('first'):>8s}  answer start {med('answer'):>8s}  "
            f"thinking {med('thought'):>7s} ({med('chars', unit=' chars')})  "
            f"done {med('done'):>8s}  "
            f"model answers {answered:.0f}/{len(runs)}"
        )


def bench_fitting(url: str) -> None:
    from django.conf import settings

    from assistant import llm, model_server
    from assistant.prompt import Passage

    use("llama3", url)
    section = (
        "The licensee pays a royalty of seven percent of net sales. The licensee keeps records "
        "for each quarter and sends them to the licensor within thirty days. "
    ) * 6
    passages = [
        Passage(n=n, document_name="licence.txt", page=1, heading=f"Section {n}", text=section)
        for n in range(1, 6)
    ]
    for max_tokens in (128, 512):
        settings.LLM_MAX_TOKENS = max_tokens
        model_server.forget()
        client = llm.OpenAIChatLLM()
        started = time.perf_counter()
        request = client.prepare(question=QUESTION, passages=passages, history=[])
        cold = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        client.prepare(question=QUESTION, passages=passages, history=[])
        warm = (time.perf_counter() - started) * 1000
        fit = request.fit
        print(
            f"fit LLM_MAX_TOKENS={max_tokens}: window {fit.context_tokens}, passages sent "
            f"{fit.kept} of 5 (dropped {fit.dropped}), prompt <= {fit.prompt_tokens} tokens "
            f"(exact count: {fit.exact}), max_tokens sent {fit.max_tokens}; prepare cold "
            f"{cold:.0f} ms, warm {warm:.0f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--questions", type=int, default=5)
    args = parser.parse_args()
    root = setup_django()

    from launcher import embedded
    from tests.factories import ingest_bytes, make_collection
    from tests.model_servers import start_family

    print(machine())
    model = embedded.ensure_gguf(root / "models")
    names = ["llama3", "mistral", "r1", "r1-no-parser", "qwen"]
    started = {name: start_family(name, model, root) for name in names}
    try:
        collection = make_collection("Licences", "licences")
        ingest_bytes(collection, "licence.txt", LICENCE.encode())
        urls = {name: url for name, (_, url) in started.items()}
        bench_families(urls, collection, args.questions)
        bench_fitting(started["llama3"][1])
    finally:
        for proc, _ in started.values():
            embedded.stop(proc)


if __name__ == "__main__":
    main()

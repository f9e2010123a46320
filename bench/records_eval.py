"""Run `evaluate --records` on the medical-records benchmark in a scratch database.

    .venv/bin/python bench/records_eval.py [BENCHMARK.json] [--llm] [evaluate options...]

Starts a scratch embedded PostgreSQL (or uses DATABASE_URL), ingests the benchmark's files into
the collection "records" and prints the report. With --llm it also starts the packaged llama.cpp
server (Gemma 3 270M, the default local backend of `make run`) and answers with it; without it
answers come from LLM_BACKEND (extractive unless set).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from _scratch import REPO, setup_django

DEFAULT = REPO.parent / "shared" / "eval" / "records" / "benchmark.json"


def main(argv: list[str]) -> None:
    use_llm = "--llm" in argv
    argv = [a for a in argv if a != "--llm"]
    benchmark = argv[0] if argv and not argv[0].startswith("-") else str(DEFAULT)
    rest = argv[1:] if argv and not argv[0].startswith("-") else argv
    # BENCH_KEEP=1 leaves the scratch database running (its URL is printed) so a later run with
    # DATABASE_URL set to it skips ingestion.
    root = setup_django(keep=os.environ.get("BENCH_KEEP") == "1")
    print(f"DATABASE_URL={os.environ['DATABASE_URL']}", file=sys.stderr)
    proc = None
    if use_llm:
        from launcher import embedded

        model = embedded.ensure_gguf(root / "models")
        proc, url = embedded.start_llm(
            model_path=model,
            port=embedded.free_port(),
            env=dict(os.environ),
            log=root / "llm.log",
            threads=2,
        )
        from django.conf import settings

        settings.LLM_BACKEND = "llamacpp"
        settings.LLM_BASE_URL = url
        settings.LLM_MODEL = embedded.DEFAULT_MODEL_ALIAS
    from django.core.management import call_command

    try:
        call_command(
            "evaluate", benchmark, "--records", "--collection", "records", "--ingest", *rest
        )
    finally:
        if proc is not None:
            from launcher import embedded

            embedded.stop(proc)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main(sys.argv[1:])

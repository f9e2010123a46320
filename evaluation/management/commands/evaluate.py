"""Measure retrieval on a benchmark.

    python manage.py evaluate BENCHMARK.json --collection SLUG [--ingest] [--k 1,2,4,8,16,32,64]
        [--mode hybrid|vector|text] [--per-document] [--limit N] [--details FILE] [--json]
    python manage.py evaluate --pubmedqa ori_pqal.json --collection SLUG [--ingest] ...
    python manage.py evaluate BENCHMARK.json --records --collection SLUG [--ingest] [--k 1,4,8]
        [--no-answers] [--answer-k N] [--limit N] [--details FILE] [--json]

--records reads the medical-records benchmark (../shared/eval/records): retrieval hit@k per
category and per format, answer accuracy and mixed-patient answers (assistant/records_eval.py).
BENCHMARK.json is the span format of ../shared/eval/README.md (CUAD, ContractNLI); it prints
recall@k, precision@k and hit@k over the character ranges of the retrieved chunks, and
retrieval latency (question embedding + search) p50/p95. --pubmedqa scores PubMedQA's labelled
set with one document per abstract (recall@k, MRR). --ingest first ingests what the benchmark
references in this process (files already in the collection are skipped); the collection is
created if needed. --per-document searches each question only within its gold document
(ContractNLI's setting). CHUNK_SIZE / CHUNK_OVERLAP apply to what --ingest ingests.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.core.management.base import BaseCommand, CommandError

from evaluation import benchmarks
from evaluation import metrics as evaluation
from evaluation import records as records_eval
from ingest.models import Collection
from ingest.selectors import SEARCH_MODES
from ingest.services import collection_get_or_create

if TYPE_CHECKING:
    from collections.abc import Sequence

    from django.core.management.base import CommandParser


class Command(BaseCommand):
    help = "Measure retrieval (recall/precision/hit@k, latency) on a benchmark."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("benchmark", nargs="?", metavar="BENCHMARK.json")
        parser.add_argument("--pubmedqa", metavar="ori_pqal.json", help="a PubMedQA file")
        parser.add_argument("--collection", required=True, metavar="SLUG")
        parser.add_argument("--ingest", action="store_true", help="ingest the referenced files")
        parser.add_argument("--k", default="1,2,4,8,16,32,64", help="comma-separated k values")
        parser.add_argument("--mode", choices=SEARCH_MODES, default="hybrid")
        parser.add_argument(
            "--per-document", action="store_true", help="search only the gold document"
        )
        parser.add_argument("--limit", type=int, default=None, help="only the first N queries")
        parser.add_argument("--details", metavar="FILE", help="write per-query results (JSONL)")
        parser.add_argument("--json", action="store_true", help="print a JSON report")
        parser.add_argument("--records", action="store_true", help="the medical-records benchmark")
        parser.add_argument(
            "--no-answers", action="store_true", help="--records: retrieval only, ask nothing"
        )
        parser.add_argument(
            "--answer-k", type=int, default=None, help="--records: passages per answer"
        )

    def handle(
        self,
        *args: Any,
        benchmark: str | None,
        pubmedqa: str | None,
        collection: str,
        ingest: bool,
        k: str,
        mode: str,
        **options: Any,
    ) -> None:
        if bool(benchmark) == bool(pubmedqa):
            raise CommandError("Give either BENCHMARK.json or --pubmedqa ori_pqal.json.")
        if pubmedqa and options["per_document"]:
            raise CommandError("--per-document applies to span benchmarks only.")
        as_json = options["json"]
        limit = options["limit"]
        if options["records"]:
            if not benchmark:
                raise CommandError("--records needs BENCHMARK.json.")
            self._records(benchmark=benchmark, collection=collection, ingest=ingest, k=k, **options)
            return
        try:
            ks = evaluation.parse_ks(k)
            source = benchmark or pubmedqa
            assert source is not None  # exactly one of the two (checked above)
            path = Path(source)
            if benchmark:
                queries = evaluation.load_span_benchmark(path)[:limit]
                sources = benchmarks.span_sources(benchmark=path, queries=queries)
            else:
                questions = evaluation.load_pubmedqa(path)[:limit]
                sources = benchmarks.pubmed_sources(benchmark=path, questions=questions)
        except evaluation.BenchmarkError as exc:
            raise CommandError(str(exc)) from exc
        target = self._collection(collection, sources, ingest=ingest, quiet=as_json)
        progress = None if as_json else self._progress
        run: benchmarks.SpanRun | benchmarks.RankRun
        if benchmark:
            run = benchmarks.span_benchmark_run(
                collection=target,
                queries=queries,
                sources=sources,
                ks=ks,
                mode=mode,
                per_document=options["per_document"],
                progress=progress,
            )
            if run.mismatched:
                self.stderr.write(
                    f"WARNING: {len(run.mismatched)} document(s) differ from their file's text, "
                    f"so their spans do not line up: {', '.join(run.mismatched[:5])}"
                )
            report = {
                "queries": run.queries,
                "k": {
                    str(k): {
                        "recall": round(s.recall, 4),
                        "precision": round(s.precision, 4),
                        "hit": round(s.hit, 4),
                    }
                    for k, s in run.scores.items()
                },
            }
        else:
            run = benchmarks.pubmedqa_run(
                collection=target,
                questions=questions,
                sources=sources,
                ks=ks,
                mode=mode,
                progress=progress,
            )
            report = {
                "queries": run.queries,
                "k": {str(k): {"recall": round(r, 4)} for k, r in run.recall.items()},
                "mrr": round(run.mrr, 4),
            }
        if run.missing:
            self.stderr.write(
                f"WARNING: {len(run.missing)} referenced document(s) are not in the collection "
                f"(their questions score 0); use --ingest: {', '.join(run.missing[:5])}"
            )
        report["latency_ms"] = {
            "p50": round(evaluation.percentile(run.latencies_ms, 50), 2),
            "p95": round(evaluation.percentile(run.latencies_ms, 95), 2),
        }
        if options["details"]:
            with Path(options["details"]).open("w", encoding="utf-8") as handle:
                for row in run.details:
                    handle.write(json.dumps(row) + "\n")
        if as_json:
            self.stdout.write(json.dumps(report, indent=2))
        else:
            self._print_table(report)

    def _collection(
        self, slug: str, sources: Sequence[benchmarks.Source], *, ingest: bool, quiet: bool
    ) -> Collection:
        """The benchmark's collection; with `ingest`, created and filled with its files first."""
        try:
            target = collection_get_or_create(slug=slug, create=ingest)
        except Collection.DoesNotExist as exc:
            raise CommandError(f"No collection {slug!r}; add --ingest to build it.") from exc
        if ingest:
            counts = benchmarks.benchmark_ingest(
                collection=target, sources=sources, progress=None if quiet else self._progress
            )
            self.stderr.write(
                f"ingest: {counts['ingested']} ingested, {counts['present']} already present, "
                f"{counts['failed']} failed"
            )
        return target

    def _records(
        self, *, benchmark: str, collection: str, ingest: bool, k: str, **options: Any
    ) -> None:
        from django.conf import settings

        as_json = options["json"]
        try:
            ks = evaluation.parse_ks(k if k != "1,2,4,8,16,32,64" else "1,4,8")
            path = Path(benchmark)
            queries = records_eval.load_records_benchmark(path)[: options["limit"]]
            sources = records_eval.record_sources(benchmark=path, queries=queries)
        except evaluation.BenchmarkError as exc:
            raise CommandError(str(exc)) from exc
        target = self._collection(collection, sources, ingest=ingest, quiet=as_json)
        progress = None if as_json else self._progress
        run = records_eval.records_run(
            collection=target,
            queries=queries,
            sources=sources,
            ks=ks,
            answer=not options["no_answers"],
            answer_k=options["answer_k"] or settings.RETRIEVAL_K,
            progress=progress,
        )
        if run.missing:
            self.stderr.write(
                f"WARNING: {len(run.missing)} referenced document(s) are not ready in the "
                f"collection; use --ingest: {', '.join(run.missing[:5])}"
            )
        report = run.report()
        report["llm_backend"] = settings.LLM_BACKEND
        if options["details"]:
            with Path(options["details"]).open("w", encoding="utf-8") as handle:
                for row in run.details:
                    handle.write(json.dumps(row) + "\n")
        if as_json:
            self.stdout.write(json.dumps(report, indent=2))
            return
        self.stdout.write(f"{report['queries']} queries, backend {report['llm_backend']}")
        for scope, rows in report["retrieval_hit"].items():
            self.stdout.write(f"retrieval hit@k, {scope} (n={rows['n']}):")
            for category, rates in rows.items():
                if category != "n":
                    shown = "  ".join(f"@{k} {v:.3f}" for k, v in rates.items())
                    self.stdout.write(f"  {category:<24} {shown}")
        answers = report["answers"]
        if answers["asked"]:
            self.stdout.write(
                f"answers: {answers['asked']} asked, answerable accuracy "
                f"{answers['answerable_accuracy']:.3f}, unanswerable refusal "
                f"{answers['unanswerable_refusal']:.3f}, mixed-patient answers "
                f"{answers['mixed_patient_answers']}, backends {answers['backends']}"
            )
            for group in ("by_category", "by_formats"):
                for label, row in answers[group].items():
                    self.stdout.write(f"  {label:<36} n={row['n']:<4} {row['accuracy']:.3f}")

    def _print_table(self, report: dict) -> None:
        rows = report["k"]
        columns = list(next(iter(rows.values())).keys())
        self.stdout.write(f"{report['queries']} queries")
        self.stdout.write("k".rjust(4) + "".join(c.rjust(11) for c in columns))
        for k, row in rows.items():
            self.stdout.write(k.rjust(4) + "".join(f"{row[c]:11.4f}" for c in columns))
        if "mrr" in report:
            self.stdout.write(f"MRR {report['mrr']:.4f}")
        latency = report["latency_ms"]
        self.stdout.write(f"latency p50 {latency['p50']:.1f} ms, p95 {latency['p95']:.1f} ms")

    def _progress(self, done: int, total: int, name: str, status: str) -> None:
        if done == total or done % 50 == 0:
            self.stderr.write(f"{done}/{total} {name} {status}".rstrip())
            sys.stderr.flush()

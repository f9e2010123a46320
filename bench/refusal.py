"""The refusal gate's curve: how often it refuses where the documents answer and where they cannot.

    .venv/bin/python bench/refusal.py [--cuad-docs 24] [--nda-docs 24] [--pubmedqa 240] [--k 5]
                                      [--save FILE] [--load FILE]

No model is called: each question is retrieved (the product's own `retrieve`, k passages) and
the gate's signals are computed from the passages (`assistant.retrieval.evidence`). Collections:
the first N CUAD contracts, N ContractNLI NDAs, N PubMedQA abstracts (each a document), in one
scratch PostgreSQL (or DATABASE_URL). Question sets, each asked of the collection that answers
it ("right") and of collections that cannot ("wrong"):

- cuad: CUAD questions as written ("Consider the <TITLE> between <parties>; What is ...?");
- cuad-short: the same questions without the preamble ("What is the governing law for this
  contract?"), as a user would ask them;
- contract-short: short generic questions a user asks of contracts ("How long is the initial
  term?", "Who pays for shipping?"), written for this bench, none about a particular file;
- nli: ContractNLI hypotheses ("Receiving Party shall not reverse engineer ...");
- pubmedqa: PubMedQA questions.

Wrong pairs: biomedical questions of the contracts and NDAs, contract questions of the
abstracts (the clean "must refuse" signal), and CUAD questions of the NDAs, reported per CUAD
category (many CUAD clauses, such as governing law or term, do appear in NDAs).
Questions are split dev/test by a hash of their document's name; thresholds are chosen on dev
and reported on both; the gate as configured (GATE_MIN_*) is printed last.
`--save` keeps the signals as JSON; `--load` prints the curves from such a file without
retrieving again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections import defaultdict
from pathlib import Path

from _scratch import setup_django
from answers import EVAL, ingest_texts

# CUAD categories an NDA would not contain: asked of NDAs these must be refused.
NOT_IN_NDAS = (
    "audit rights",
    "insurance",
    "minimum commitment",
    "revenue or profit-sharing",
    "volume restrictions",
    "most favored nation",
    "price restrictions",
    "right of first refusal",
    "unlimited or all-you-can-eat",
    "affiliates have any licensing",
    "joint intellectual",
    "exclusivity",
    "renewal term",
    "terminate the renewal",
    "warranties",
)


# Short questions as users type them, about contracts in general (not about any one file).
CONTRACT_SHORT = (
    "How long is the initial term?",
    "What is the term?",
    "Who are the parties?",
    "What law governs?",
    "Which state's law applies?",
    "Can the agreement be terminated?",
    "How much notice is needed to terminate?",
    "When does the agreement expire?",
    "Does it renew automatically?",
    "What is the territory?",
    "Who pays for shipping?",
    "What are the payment terms?",
    "Is there a warranty?",
    "What products are covered?",
    "Is there a non-compete?",
    "Can the agreement be assigned?",
    "Who owns the intellectual property?",
    "Is there a limitation of liability?",
    "What insurance is required?",
    "Are there minimum purchase requirements?",
    "How are disputes resolved?",
    "What happens on termination?",
    "Is there an exclusivity clause?",
    "What are the confidentiality obligations?",
    "Who indemnifies whom?",
    "What fees are payable?",
    "Is there an audit right?",
    "When is payment due?",
    "What is the effective date?",
    "Can either party terminate for breach?",
)


def split_of(name: str) -> str:
    digest = hashlib.sha1(name.encode(), usedforsecurity=False).digest()  # a stable split
    return "dev" if digest[0] % 2 == 0 else "test"


def cuad_category(query: str) -> str:
    return query.split(";", 1)[1].strip() if ";" in query else query


def nda_plausible(category: str) -> bool:
    return not any(word in category.lower() for word in NOT_IN_NDAS)


def load_questions(cuad_docs: int, nda_docs: int, pubmedqa: int):
    """(collections {slug: [(name, text, source)]}, questions [(set, text, doc, category)])."""
    cuad = json.loads((EVAL / "cuad" / "benchmark.json").read_text())["tests"]
    files: list[str] = []
    for test in cuad:
        for snippet in test["snippets"]:
            if snippet["file_path"] not in files:
                files.append(snippet["file_path"])
    chosen = set(files[:cuad_docs])
    questions = []
    for test in cuad:
        docs = {s["file_path"] for s in test["snippets"]}
        if docs <= chosen:
            doc = sorted(docs)[0]
            questions.append(("cuad", test["query"], doc, cuad_category(test["query"])))
            short = cuad_category(test["query"])
            questions.append(("cuad-short", short, doc, short))
    for text in CONTRACT_SHORT:
        questions.append(("contract-short", text, text, "contract-short"))
    nli = json.loads((EVAL / "contractnli" / "benchmark.json").read_text())["tests"]
    nda_files = sorted((EVAL / "contractnli" / "txt").glob("*.txt"))[:nda_docs]
    nda_names = {f"txt/{p.name}" for p in nda_files}
    for test in nli:
        docs = {s["file_path"] for s in test["snippets"]}
        if docs and docs <= nda_names:
            questions.append(("nli", test["query"], sorted(docs)[0], "nli"))
    abstracts = list(json.loads((EVAL / "pubmedqa" / "ori_pqal.json").read_text()).items())
    abstracts = abstracts[:pubmedqa]
    for pmid, v in abstracts:
        questions.append(("pubmedqa", v["QUESTION"], pmid, "pubmedqa"))
    collections = {
        "cuad": [
            (Path(f).name, (EVAL / "cuad" / f).read_text(encoding="utf-8"), f)
            for f in sorted(chosen)
        ],
        "ndas": [(p.name, p.read_text(encoding="utf-8"), p.name) for p in nda_files],
        "pubmedqa": [(f"{k}.txt", " ".join(v["CONTEXTS"]), k) for k, v in abstracts],
    }
    return collections, questions


# Which collection answers each question set; every other collection cannot (except that
# CUAD questions of the NDAs are reported per category).
RIGHT = {
    "cuad": "cuad",
    "cuad-short": "cuad",
    "contract-short": "cuad",
    "nli": "ndas",
    "pubmedqa": "pubmedqa",
}


def measure(args) -> list[dict]:
    setup_django()
    from django.conf import settings

    from assistant.retrieval import evidence, is_relevant, retrieve
    from ingest.models import Collection

    collections, questions = load_questions(args.cuad_docs, args.nda_docs, args.pubmedqa)
    for slug, items in collections.items():
        ingest_texts(slug, items)
    ids = {slug: Collection.objects.get(slug=slug).id for slug in collections}
    rows = []
    for qset, text, doc, category in questions:
        for slug in collections:
            hits = retrieve(question=text, collection_ids=[ids[slug]], k=args.k)
            ev = evidence(question=text, hits=hits)
            rows.append(
                {
                    "set": qset,
                    "collection": slug,
                    "right": slug == RIGHT[qset],
                    "split": split_of(doc),
                    "category": category,
                    "similarity": ev.similarity,
                    "text_match": ev.text_match,
                    "coverage": ev.coverage,
                    # the gate before this change: any passage related by is_relevant
                    "old_gate_answers": any(is_relevant(h) for h in hits),
                }
            )
    print(
        f"{len(questions)} questions x {len(collections)} collections "
        f"({', '.join(f'{s}: {len(v)} documents' for s, v in collections.items())}); "
        f"k={args.k}, chunk size {settings.CHUNK_SIZE}"
    )
    return rows


def groups(rows: list[dict]) -> dict[str, list[dict]]:
    """Named (question set -> collection) groups, right ones first, then the must-refuse ones."""
    out: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        pair = f"{r['set']}->{r['collection']}"
        if r["right"]:
            out["right  " + pair].append(r)
        elif r["set"].startswith(("cuad", "contract")) and r["collection"] == "ndas":
            if r["set"] == "contract-short":
                out["nda    " + pair].append(r)
                continue
            kind = "nda-plausible" if nda_plausible(r["category"]) else "not-in-ndas"
            out[f"nda    {pair} ({kind})"].append(r)
        elif r["set"] == "nli" and r["collection"] == "cuad":
            out["nda    " + pair].append(r)  # NDA clauses can appear in other contracts
        else:
            out["wrong  " + pair].append(r)
    return dict(sorted(out.items(), key=lambda kv: ("rnw".index(kv[0][0]), kv[0])))


def refuses(r: dict, gate: dict[str, float]) -> bool:
    """assistant.retrieval.answerable over the saved signals: answer when the best passage is
    similar enough, or (text_match > 0 turns this on) when the passages hold the question's
    words: a passage with that share of its rarity-weighted words, and that share of all its
    content words among the passages."""
    t = gate.get("text_match", 0.0)
    similar = r["similarity"] >= gate.get("similarity", 0.0) - 1e-9
    words = t > 0 and r["text_match"] >= t - 1e-9 and r["coverage"] >= gate["coverage"] - 1e-9
    return not (similar or words)


def below(r: dict, signal: str, t: float) -> bool:
    return r[signal] < t - 1e-9


def rate(rows: list[dict], gate: dict[str, float]) -> float:
    return sum(refuses(r, gate) for r in rows) / len(rows) if rows else float("nan")


def print_curves(rows: list[dict], configured: dict[str, float]) -> None:
    named = groups(rows)
    print("\nRefusal rate by group (both splits); n = questions")
    old = {k: sum(not r["old_gate_answers"] for r in v) / len(v) for k, v in named.items()}
    for name, v in named.items():
        print(f"  {name:<52} n={len(v):<4} old gate refuses {old[name]:.3f}")
    grids = {
        "similarity": [0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5],
        "text_match": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
        "coverage": [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
    }
    for signal, grid in grids.items():
        print(f"\nCurve: refuse when best {signal} < t (refusal rate per group)")
        print("  " + f"{'group':<52}" + "".join(f"{t:>6}" for t in grid))
        for name, v in named.items():
            cells = "".join(f"{sum(below(r, signal, t) for r in v) / len(v):6.3f}" for t in grid)
            print("  " + f"{name:<52}" + cells)
    print("\nCUAD questions (as written, and short) asked of the NDAs, per category:")
    per: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["set"].startswith("cuad") and r["collection"] == "ndas":
            per[r["category"]][r["set"]].append(r)
    print(f"  {'category':<90} {'n':>3} {'old':>5} {'new':>5} {'new short':>9}")
    for category, sets in sorted(per.items(), key=lambda kv: nda_plausible(kv[0])):
        full, short = sets["cuad"], sets["cuad-short"]
        mark = "" if nda_plausible(category) else " *"
        print(
            f"  {category[:88] + mark:<90} {len(full):>3} "
            f"{sum(not r['old_gate_answers'] for r in full) / len(full):5.2f} "
            f"{rate(full, configured):5.2f} {rate(short, configured):9.2f}"
        )
    print("  (* an NDA would not hold this clause; old = gate before, new = configured gate)")


def choose(rows: list[dict], *, budget: float) -> dict[str, float]:
    """The gate (similarity; text match with coverage, or 0: off) that refuses the most
    cross-domain questions on dev while refusing at most `budget` of every right group on dev.
    Ties go to fewer refusals where the documents answer, then to the lower thresholds."""
    named = groups([r for r in rows if r["split"] == "dev"])
    right = [v for k, v in named.items() if k.startswith("right")]
    wrong = [v for k, v in named.items() if k.startswith("wrong")]
    best: tuple[tuple[float, float, float], dict[str, float]] = ((-1.0, 0.0, 0.0), {})
    for s in [x / 100 for x in range(10, 61)]:
        for t in [0.0] + [x / 10 for x in range(3, 11)]:
            for c in [x / 10 for x in range(9)] if t else [0.0]:
                gate = {"similarity": s, "text_match": t, "coverage": c}
                refused_right = [rate(v, gate) for v in right]
                if max(refused_right) > budget:
                    continue
                key = (
                    round(sum(rate(v, gate) for v in wrong) / len(wrong), 4),
                    -round(sum(refused_right), 4),
                    -(s + t + c),
                )
                if key > best[0]:
                    best = (key, gate)
    return best[1]


def print_table(rows: list[dict], gate: dict[str, float]) -> None:
    named_dev = groups([r for r in rows if r["split"] == "dev"])
    named_test = groups([r for r in rows if r["split"] == "test"])
    print(f"  {'group':<52} {'dev':>6} {'test':>6}")
    for name in named_dev:
        print(
            f"  {name:<52} {rate(named_dev[name], gate):6.3f} "
            f"{rate(named_test.get(name, []), gate):6.3f}"
        )


def summary(rows: list[dict], gate: dict[str, float]) -> str:
    named = groups(rows)
    right = max(rate(v, gate) for k, v in named.items() if k.startswith("right"))
    wrong = [rate(v, gate) for k, v in named.items() if k.startswith("wrong")]
    return (
        f"right at most {right:.3f}, cross-domain mean {sum(wrong) / len(wrong):.3f} "
        f"(lowest group {min(wrong):.3f})"
    )


def print_choice(rows: list[dict], configured: dict[str, float]) -> None:
    dev = [r for r in rows if r["split"] == "dev"]
    test = [r for r in rows if r["split"] == "test"]
    print("\nBest gate on dev for a budget of refusals in every right group (dev / test):")
    for budget in (0.005, 0.01, 0.02):
        gate = choose(rows, budget=budget)
        print(f"  budget {budget:.1%}: {gate}")
        print(f"    dev:  {summary(dev, gate)}\n    test: {summary(test, gate)}")
    print(f"\nThe configured gate (GATE_MIN_*): {configured}")
    print_table(rows, configured)


def configured_gate() -> dict[str, float]:
    from django.conf import settings

    return {
        "similarity": settings.GATE_MIN_SIMILARITY,
        "text_match": settings.GATE_MIN_TEXT_MATCH,
        "coverage": settings.GATE_MIN_COVERAGE,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cuad-docs", type=int, default=24)
    parser.add_argument("--nda-docs", type=int, default=24)
    parser.add_argument("--pubmedqa", type=int, default=240)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--save", type=Path)
    parser.add_argument("--load", type=Path)
    args = parser.parse_args()
    if args.load:
        rows = json.loads(args.load.read_text())
        os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
        os.environ.setdefault("DATABASE_URL", "postgres://unused/unused")
        os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
        import django

        django.setup()
    else:
        rows = measure(args)
        if args.save:
            args.save.write_text(json.dumps(rows))
    print_curves(rows, configured_gate())
    print_choice(rows, configured_gate())


if __name__ == "__main__":
    main()

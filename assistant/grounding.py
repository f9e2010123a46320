"""Grounding checks: does an answer say what its cited passages say?

Support (the share of a sentence's content words found in what it cites), figures stated that
no cited passage holds, and the extractive answer (the passage sentences that best match the
question, each cited) used when there is no model or its answer cannot be shown.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .text import CITATION, content_words

if TYPE_CHECKING:
    from .prompt import Passage

SENTENCE_SPLIT = re.compile(r"(?<=[.!?;])\s+|\n\s*\n")


def extractive_answer(*, question: str, passages: list[Passage], max_sentences: int = 3) -> str:
    """The passage sentences that share most content words with the question, each cited.

    A sentence scores by the question words it contains, normalised by its length so long
    boilerplate does not win; sentences within 60% of the best are kept, in reading order.
    """
    wanted = set(content_words(question))
    if not wanted:
        return ""
    scored: list[tuple[float, int, int, str]] = []
    seen: set[str] = set()  # neighbouring chunks overlap: quote a sentence once
    for rank, p in enumerate(passages):
        for position, raw in enumerate(SENTENCE_SPLIT.split(p.text)):
            sentence = " ".join(raw.split())
            words = content_words(sentence)
            if len(words) < 3 or sentence in seen:
                continue
            seen.add(sentence)
            overlap = len(wanted.intersection(words))
            if overlap == 0:
                continue
            # Earlier passages were ranked higher by retrieval: a small prior breaks ties.
            score = overlap / (len(words) ** 0.5) + 0.05 / (rank + 1)
            scored.append((score, rank, position, sentence[:600]))
    if not scored:
        return ""
    scored.sort(key=lambda s: -s[0])
    top = scored[0][0]
    best = [s for s in scored[:max_sentences] if s[0] >= 0.6 * top]
    best.sort(key=lambda s: (s[1], s[2]))  # reading order
    return " ".join(f"{sentence} [{passages[rank].n}]" for _, rank, _, sentence in best)


def support_score(sentence: str, cited_texts: list[str]) -> float:
    """Share of the sentence's content words that appear in the passages it cites (0..1)."""
    words = set(content_words(CITATION.sub("", sentence)))
    if not words:
        return 1.0
    found: set[str] = set()
    for text in cited_texts:
        found |= words.intersection(content_words(text))
    return len(found) / len(words)


FIGURE = re.compile(r"\d+(?:[.,]\d+)*")


def figures(text: str) -> set[str]:
    """The numbers written in `text` (citation markers left out), thousands separators dropped."""
    return {m.group(0).replace(",", "") for m in FIGURE.finditer(CITATION.sub(" ", text))}


def unsupported_figures(text: str, cited_texts: list[str]) -> list[str]:
    """Numbers the answer states that none of its cited passages contains.

    Amounts, dates, percentages and doses are what a reader acts on: a figure the model did not
    read in the passages it cites is the most harmful kind of invention."""
    found: set[str] = set()
    for cited in cited_texts:
        found |= figures(cited)
    return sorted(figures(text) - found)


def unsupported_sentences(
    text: str, passages: list[Passage], *, threshold: float
) -> list[dict[str, object]]:
    """Sentences of an answer that cite nothing, or whose cited passages do not support them."""
    by_n = {p.n: p.text for p in passages}
    flagged: list[dict[str, object]] = []
    for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9(])|(?<=\])\s+", text.strip()):
        if len(content_words(CITATION.sub("", sentence))) < 2:
            continue
        cited = [int(n) for n in CITATION.findall(sentence) if int(n) in by_n]
        score = support_score(sentence, [by_n[n] for n in cited]) if cited else 0.0
        if score < threshold:
            flagged.append({"sentence": sentence, "cited": cited, "score": round(score, 3)})
    return flagged


def attribute(
    text: str, passages: list[Passage], removed: list[int] | None = None
) -> tuple[str, set[int]]:
    """(text, cited): keep only citations naming a shown passage (the others are appended to
    `removed`); cite the passage an uncited answer quotes."""
    valid = {p.n for p in passages}
    cited: set[int] = set()

    def keep(match: re.Match[str]) -> str:
        n = int(match.group(1))
        if n in valid:
            cited.add(n)
            return match.group(0)
        if removed is not None:
            removed.append(n)
        return ""

    cleaned = re.sub(r"\s+([.,;])", r"\1", CITATION.sub(keep, text)).strip()
    if not cited and cleaned:
        # A short extractive answer from a base model rarely cites: find the passage it quotes.
        words = set(content_words(cleaned))
        if words:
            best = max(passages, key=lambda p: len(words.intersection(content_words(p.text))))
            share = len(words.intersection(content_words(best.text))) / len(words)
            if share >= 0.6:
                cited.add(best.n)
                cleaned = f"{cleaned.rstrip()} [{best.n}]"
    return cleaned, cited


def unusable_reason(text: str, question: str) -> str:
    """Why a model answer cannot be shown, or "" when it can."""
    if not text.strip():
        return "the model returned an empty answer"
    if len(content_words(text)) == 0:
        return "the model's answer has no content"
    if " ".join(question.lower().split()) in " ".join(text.lower().split()):
        return "the model echoed the question"
    return ""

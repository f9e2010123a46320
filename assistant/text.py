"""Words of a text as retrieval, grounding and patient matching compare them.

One light tokenizer for every place that asks "do these two texts share content words":
lower-cased words, stopwords dropped, a light suffix strip. Also the citation marker [n].
"""

from __future__ import annotations

import re

CITATION = re.compile(r"\[(\d{1,2})\]")
WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'\-]*")
STOPWORDS = frozenset(
    """a an and are as at be by can could did do does for from had has have how i if in is it
    its may might must of on or shall should so such that the their there these this those to
    under was were what when where which who whom whose why will with would you your any all
    not no yes than then into upon about per each other""".split()
)


def stem(word: str) -> str:
    """A light suffix strip so that "renews", "renewed" and "renewing" meet "renew" (and
    "allergies" meets "allergy", "currently" meets "current")."""
    if word.endswith("ies") and len(word) >= 6:
        return word[:-3] + "y"
    for suffix in ("ing", "ed", "es", "ly", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> list[str]:
    """Lower-cased, lightly stemmed words of `text` without stopwords."""
    return [
        stem(w) for w in (m.group(0).lower() for m in WORD.finditer(text)) if w not in STOPWORDS
    ]

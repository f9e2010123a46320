"""Redaction of personal identifiers in what users see (REDACT_IDENTIFIERS).

The stored text (documents, chunks, answers, citations, audit payloads) never changes: redaction
applies on the way out, to users without the `assistant.view_identifiers` permission, and to
audit exports made with `--redact` (or `redact=1`). It covers e-mail addresses, phone numbers,
US social security numbers, medical record numbers and dates of birth. MRNs and dates of birth
are recognised by their label ("MRN: ...", "Medical Record Number ...", "DOB", "Date of birth",
"Birth Date"), since an unlabelled date or number is usually clinical (a visit, a dose) and
must stay readable.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings

PERMISSION = "assistant.view_identifiers"

_DATE = (
    r"(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}"
    r"|(?:\d{1,2}\s+)?(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
    r"(?:\s+\d{1,2}(?:st|nd|rd|th)?)?,?\s+\d{4})"
)
_LABEL_GAP = r"[ \t]*(?:[:#=]|\bis\b|\bno\.?)?[ \t]*(?:[:#])?[ \t]*"

_LABELS = {
    "SSN": r"(?i:\b(?:SSN|social security (?:number|no\.?|#)))",
    "MRN": r"(?i:\b(?:MRN|medical record (?:number|no\.?|#)|patient id))",
    "DOB": r"(?i:\b(?:DOB|D\.O\.B\.?|date of birth|birth ?date|born(?: on)?))",
}
_VALUES = {
    "SSN": r"\d{3}-?\d{2}-?\d{4}\b",
    "MRN": r"[A-Za-z0-9][A-Za-z0-9-]{3,}",
    "DOB": _DATE,
}
# Labelled identifiers first (the label is kept, the value replaced), then bare patterns.
LABELLED = {
    kind: re.compile(f"({label}{_LABEL_GAP})({_VALUES[kind]})") for kind, label in _LABELS.items()
}
PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("EMAIL", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")),
    ("SSN", re.compile(r"(?<![\w-])(?!000|666)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")),
    (
        "PHONE",
        re.compile(
            r"(?<![\w-])(?:\+?1[ .-]?)?(?:\(\d{3}\)\s?|\d{3}[ .-])\d{3}[ .-]\d{4}"
            r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?(?![\w-])"
        ),
    ),
]


def redact(text: str) -> str:
    """`text` with each identifier replaced by [EMAIL], [PHONE], [SSN], [MRN] or [DOB]
    (a label such as "MRN:" or "Date of birth:" is kept before the placeholder)."""
    if not text:
        return text
    for kind, pattern in LABELLED.items():
        text = pattern.sub(lambda m, kind=kind: f"{m.group(1)}[{kind}]", text)
    for kind, pattern in PATTERNS:
        text = pattern.sub(f"[{kind}]", text)
    return text


def redact_value(value: Any) -> Any:
    """Every string inside a JSON-like value, redacted (dict keys are kept)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    return value


def must_redact(user) -> bool:
    """Whether what `user` sees is redacted: REDACT_IDENTIFIERS is on and they lack the
    permission. `None` (an operator at the command line) sees everything."""
    if not getattr(settings, "REDACT_IDENTIFIERS", False) or user is None:
        return False
    return not user.has_perm(PERMISSION)


def redact_row(row: dict[str, Any]) -> dict[str, Any]:
    """An audit export row with identifiers redacted in its summary and payload."""
    return {
        **row,
        "summary": redact(row["summary"]),
        "payload": redact_value(row["payload"]),
        "identifiers_redacted": True,
    }

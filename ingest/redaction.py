"""Redaction of personal identifiers in what users see (REDACT_IDENTIFIERS).

The stored text (documents, chunks, answers, citations, audit payloads) never changes: redaction
applies on the way out, to users without the `assistant.view_identifiers` permission, and to
audit exports made with `--redact` (or `redact=1`). It covers e-mail addresses, phone numbers,
US social security numbers, medical record numbers and dates of birth. MRNs and dates of birth
are recognised by their label ("MRN: ...", "Medical Record Number ...", "DOB", "Date of birth",
"Birth Date"), since an unlabelled date or number is usually clinical (a visit, a dose) and
must stay readable.

Clinical records add names, addresses and other identifiers: the values of labelled fields
("Name:", "Patient:", "Address:", "Identifier:", "Driver's License:", "Passport:") as the FHIR,
C-CDA and Synthea renderings write them, and anywhere in any text, the names and identifier
values of the patients Attest knows (ingest.Patient), so a note or a text export that mentions
a patient without a label is covered too. That list is re-read at most every
KNOWN_REFRESH_SECONDS, and at once in the process that adds or changes a patient.
"""

from __future__ import annotations

import re
import threading
import time
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.contrib.auth.models import AnonymousUser, User

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
# Labelled fields of the clinical renderings whose value runs to the end of the line (for a
# "Patient:" line, to the "(born ...)" that follows the name).
LINE_FIELDS: list[tuple[str, re.Pattern[str]]] = [
    ("NAME", re.compile(r"(?m)^([ \t]*(?:Patient|Name)[ \t]*:[ \t]*)([^\n(]*[^\s(.])")),
    ("ADDRESS", re.compile(r"(?mi)^([ \t]*(?:Home )?Address[ \t]*:[ \t]*)([^\n]*[^\s.])")),
    (
        "ID",
        re.compile(
            r"(?mi)^([ \t]*(?:Identifier|Driver's License|Passport(?: Number)?)[ \t]*:[ \t]*)"
            r"(\S+)"
        ),
    ),
]
KNOWN_REFRESH_SECONDS = 5.0
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
    """`text` with each identifier replaced by [EMAIL], [PHONE], [SSN], [MRN], [DOB], [NAME],
    [ADDRESS] or [ID] (a label such as "MRN:" or "Date of birth:" is kept before the
    placeholder). Reads the known patients from the database (cached)."""
    if not text:
        return text
    for kind, pattern in LABELLED.items():
        text = pattern.sub(_after_label(kind), text)
    for kind, pattern in LINE_FIELDS:
        text = pattern.sub(_after_label(kind), text)
    for kind, pattern in PATTERNS:
        text = pattern.sub(f"[{kind}]", text)
    return _known.redact(text)


def _after_label(kind: str) -> Callable[[re.Match[str]], str]:
    """A match's label (group 1) followed by the [kind] placeholder."""

    def replace(match: re.Match[str]) -> str:
        return f"{match.group(1)}[{kind}]"

    return replace


class _KnownPatients:
    """The names and identifier values of every known patient, matched word by word (a set
    lookup per word, so thousands of patients cost no more than a few)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read_at = -1e9
        self._names: frozenset[str] = frozenset()
        self._ids: frozenset[str] = frozenset()

    def forget(self) -> None:
        self._read_at = -1e9

    def redact(self, text: str) -> str:
        self._refresh()
        if not self._names and not self._ids:
            return text

        def replace(match: re.Match[str]) -> str:
            word = match.group(0)
            if word in self._ids:
                return "[ID]"
            if word in self._names:
                return "[NAME]"
            return word

        return _WORDS.sub(replace, text)

    def _refresh(self) -> None:
        if time.monotonic() - self._read_at < KNOWN_REFRESH_SECONDS:
            return
        with self._lock:
            if time.monotonic() - self._read_at < KNOWN_REFRESH_SECONDS:
                return
            from ingest.models import Patient

            names: set[str] = set()
            ids: set[str] = set()
            for given, family, identifiers in Patient.objects.values_list(
                "given", "family", "identifiers"
            ):
                for word in _WORDS.findall(f"{given} {family}"):
                    if len(word) >= 2:
                        names.update({word, word.upper()})
                for item in identifiers or []:
                    value = str(item.get("value") or "") if isinstance(item, dict) else ""
                    if len(value) >= 4 and _WORDS.fullmatch(value):
                        ids.add(value)
            self._names, self._ids = frozenset(names), frozenset(ids)
            self._read_at = time.monotonic()


_WORDS = re.compile(r"[\w-]+")
_known = _KnownPatients()


def patients_changed(**_: Any) -> None:
    """Signal receiver: a patient was added, changed or deleted in this process."""
    _known.forget()


def redact_value(value: Any) -> Any:
    """Every string inside a JSON-like value, redacted (dict keys are kept)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    return value


def must_redact(user: User | AnonymousUser | None) -> bool:
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

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
KNOWN_REFRESH_SECONDS, and at once in the process that adds or changes a patient. Words are
split at underscores and hyphens too, so a hospital file name ("Abel832_Muller251_<id>.json")
is covered, and a FHIR reference to a patient ("Patient/<id>") keeps only its type.

Text people type or name (questions, feedback, audit summaries and filters, document and file
names) is redacted `loose`ly: a known name also matches in any case, without accents, and
without the digits a source adds ("abel muller" for Abel832 Muller251), and an identifier in
any case. Record text keeps the exact match, so a clinical word that happens to be a patient's
name in lower case ("rose", "will") stays readable there. `identifier_in` says whether a search
string looks like an identifier (see audit/compliance.py: filter_refusal).
"""

from __future__ import annotations

import re
import threading
import time
from typing import TYPE_CHECKING, Any

from django.conf import settings

from .patients import NOT_NAMES, fold

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
    # A FHIR reference to a patient names the patient's resource id in the source system.
    ("ID", re.compile(r"(?<=\bPatient/)[A-Za-z0-9][A-Za-z0-9.-]*")),
    (
        "PHONE",
        re.compile(
            r"(?<![\w-])(?:\+?1[ .-]?)?(?:\(\d{3}\)\s?|\d{3}[ .-])\d{3}[ .-]\d{4}"
            r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?(?![\w-])"
        ),
    ),
]


def redact(text: str, *, loose: bool = False) -> str:
    """`text` with each identifier replaced by [EMAIL], [PHONE], [SSN], [MRN], [DOB], [NAME],
    [ADDRESS] or [ID] (a label such as "MRN:" or "Date of birth:" is kept before the
    placeholder). Reads the known patients from the database (cached). `loose`: for text people
    type or name (see the module docstring)."""
    if not text:
        return text
    if loose and "_" in text:
        # File names join words with underscores, which the patterns read as letters.
        text = "_".join(_patterns(part) for part in text.split("_"))
    else:
        text = _patterns(text)
    return _known.redact(text, loose=loose)


def _patterns(text: str) -> str:
    for kind, pattern in LABELLED.items():
        text = pattern.sub(_after_label(kind), text)
    for kind, pattern in LINE_FIELDS:
        text = pattern.sub(_after_label(kind), text)
    for kind, pattern in PATTERNS:
        text = pattern.sub(f"[{kind}]", text)
    return text


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
        self._folded_names: frozenset[str] = frozenset()
        self._folded_ids: frozenset[str] = frozenset()

    def forget(self) -> None:
        self._read_at = -1e9

    def redact(self, text: str, *, loose: bool = False) -> str:
        self._refresh()
        if not self._names and not self._ids:
            return text

        def word(match: re.Match[str]) -> str:
            return self._word(match.group(0), loose=loose)

        return _WORDS.sub(word, text)

    def matches(self, text: str) -> bool:
        """Whether `text` holds a known name or identifier, matched loosely."""
        return self.redact(text, loose=True) != text

    def _word(self, word: str, *, loose: bool) -> str:
        """A word ("[\\w-]+") with the known identifiers and names in it replaced: the whole
        word, else its parts between underscores, else their parts between hyphens."""
        if word in self._ids or (loose and word.lower() in self._folded_ids):
            return "[ID]"
        if word in self._names or (loose and self._loose_name(word)):
            return "[NAME]"
        for separator in ("_", "-"):
            if separator in word:
                return separator.join(self._word(p, loose=loose) for p in word.split(separator))
        return word

    def _loose_name(self, word: str) -> bool:
        """Whether a typed word is a known name: folded (case, accents and trailing digits,
        patients.fold), with or without a plural or possessive "s"."""
        folded = fold(word)
        return folded in self._folded_names or folded.removesuffix("s") in self._folded_names

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
                full = f"{given} {family}"
                # Whole words ("Smith-Jones") and their parts ("Smith", "Jones").
                for word in {*_NAME_WORDS.findall(full), *_PARTS.findall(full)}:
                    # As the record writes it, and without the digits a source adds.
                    for form in {word, word.rstrip("0123456789")}:
                        if len(form) >= 2:
                            names.update({form, form.upper()})
                for item in identifiers or []:
                    value = str(item.get("value") or "") if isinstance(item, dict) else ""
                    if len(value) >= 4 and _WORDS.fullmatch(value):
                        ids.add(value)
            self._names, self._ids = frozenset(names), frozenset(ids)
            self._folded_names = frozenset(fold(n) for n in names) - NOT_NAMES - {""}
            self._folded_ids = frozenset(i.lower() for i in ids)
            self._read_at = time.monotonic()


_WORDS = re.compile(r"[\w-]+")
_NAME_WORDS = re.compile(r"[^\W_]+(?:-[^\W_]+)*")
_PARTS = re.compile(r"[^\W_]+")
_known = _KnownPatients()


def patients_changed(**_: Any) -> None:
    """Signal receiver: a patient was added, changed or deleted in this process."""
    _known.forget()


# Strings of an audit payload that are record text (the passages): redacted exactly. Every
# other string was typed or named by a person (questions, comments, document names, filters)
# or may quote them (an answer says what the question asked for), and is redacted loosely.
RECORD_TEXT_KEYS = frozenset({"text"})


def redact_value(value: Any, *, loose: bool = True) -> Any:
    """Every string inside a JSON-like value, redacted (dict keys are kept): loosely, but
    exactly under RECORD_TEXT_KEYS."""
    if isinstance(value, str):
        return redact(value, loose=loose)
    if isinstance(value, list):
        return [redact_value(v, loose=loose) for v in value]
    if isinstance(value, dict):
        return {
            k: redact_value(v, loose=loose and k not in RECORD_TEXT_KEYS) for k, v in value.items()
        }
    return value


def identifier_in(text: str) -> str:
    """What in a search string could be an identifier, in words ("" when nothing): any digit
    (an SSN, MRN, phone number, date or any part of one, as full-text search matches the parts
    of a hyphenated number), an e-mail address, a labelled field, or a known patient's name or
    identifier value, matched loosely."""
    if "@" in text:
        return "an e-mail address"
    if any(c.isdigit() for c in text):
        return "digits (an SSN, MRN, phone number, date of birth or part of one)"
    if _patterns(text) != text:
        return "a labelled identifier"
    if _known.matches(text):
        return "a patient's name or identifier"
    return ""


def must_redact(user: User | AnonymousUser | None) -> bool:
    """Whether what `user` sees is redacted: REDACT_IDENTIFIERS is on and they lack the
    permission. `None` (an operator at the command line) sees everything."""
    if not getattr(settings, "REDACT_IDENTIFIERS", False) or user is None:
        return False
    return not user.has_perm(PERMISSION)


def redact_row(row: dict[str, Any]) -> dict[str, Any]:
    """An audit row (export, API) with identifiers redacted in its summary and its payload
    (when it has one)."""
    redacted = {**row, "summary": redact(row["summary"], loose=True), "identifiers_redacted": True}
    if "payload" in row:
        redacted["payload"] = redact_value(row["payload"])
    return redacted

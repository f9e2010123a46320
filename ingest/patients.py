"""Finding the patient a question names, as people write names.

Records carry names as their source wrote them ("Vincenzo126 Bergstrom287": Synthea appends
digits); people type "Vincenzo", "Vincenzo's", "bergstrom", "Vincenso Bergstrom" or the MRN.
A name part of the question matches a patient when, after folding case, accents, possessives
and trailing digits, it equals the patient's given or family name, or differs from it by one
letter (names of at least MIN_TYPO_LENGTH letters). Identifier values (MRN, the source's
patient id) match as whole words.

The strongest kind of match decides: an identifier, then the given and the family name
together, then the family name alone, then the given name alone. Several patients matching at
that strength are all returned: the caller asks back which one is meant.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from .selectors import ChunkHit

MIN_TYPO_LENGTH = 5  # "Ann" must not match "and"; "Vincenso" may match "Vincenzo"
MIN_IDENTIFIER_LENGTH = 5  # shorter values ("1", "A") would match words by accident

# Words that are never a name, however a record spells one: question words, clinical words a
# name could be one letter away from, and the words of the categories asked about.
NOT_NAMES = frozenset(
    """a about after all allergic allergies allergy an and any anything are as at be been
    before being blood born but by can chart could current currently date did do does dose
    during ever for from gender given had has have he her hers him his how i if in is it its
    last latest list may me medication medications meds might most must my new no not of on or
    our patient
    patients pressure rate record records recorded recent result results she show since so
    some taking tell than that the their them then there these they this those to up was we
    shall should were what when where which who whom whose why will with would you
    your""".split()
)

_APOSTROPHES = "'\u2019"  # typed and typographic
_WORD = re.compile(rf"[^\W_][\w{_APOSTROPHES}.-]*", re.UNICODE)
_POSSESSIVE = re.compile(rf"[{_APOSTROPHES}]s?$")


def fold(text: str) -> str:
    """Lower case, accents dropped, trailing digits dropped: "Bergström287" -> "bergstrom"."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    return plain.rstrip("0123456789")


def question_words(question: str) -> list[str]:
    """The question's words as names are compared: possessives and punctuation stripped."""
    words = []
    for raw in _WORD.findall(question):
        word = _POSSESSIVE.sub("", raw.strip(".-" + _APOSTROPHES))
        if word:
            words.append(word)
    return words


def within_one_edit(a: str, b: str) -> bool:
    """Whether `a` becomes `b` by at most one inserted, deleted or replaced letter (or two
    neighbouring letters swapped)."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]]
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1 :]


@dataclass(frozen=True)
class NamedPatient:
    """What name matching needs of a patient."""

    patient_id: int
    given: str
    family: str
    identifiers: tuple[str, ...] = ()


# How strongly a question names a patient, strongest first.
IDENTIFIER, FULL_NAME, FAMILY_NAME, GIVEN_NAME = 4, 3, 2, 1


def _part_matches(part: str, words: set[str]) -> bool:
    if not part or part in NOT_NAMES:
        return False
    if part in words:
        return True
    if len(part) < MIN_TYPO_LENGTH:
        return False
    return any(
        len(w) >= MIN_TYPO_LENGTH - 1 and w not in NOT_NAMES and within_one_edit(w, part)
        for w in words
    )


def match_strength(patient: NamedPatient, words: Sequence[str]) -> int:
    """0 when the question's words do not name the patient, else IDENTIFIER .. GIVEN_NAME."""
    raw = set(words)
    if any(len(v) >= MIN_IDENTIFIER_LENGTH and v in raw for v in patient.identifiers):
        return IDENTIFIER
    folded = {fold(w) for w in words}
    folded.discard("")
    given = fold(patient.given.split(" ")[0]) if patient.given else ""
    family = fold(patient.family)
    has_given = _part_matches(given, folded)
    has_family = _part_matches(family, folded)
    if has_given and has_family:
        return FULL_NAME
    if has_family:
        return FAMILY_NAME
    if has_given:
        return GIVEN_NAME
    return 0


def naming_words(question: str, patient: NamedPatient) -> frozenset[str]:
    """The question's words (folded) that name the patient: they are not what is asked about."""
    given = fold(patient.given.split(" ")[0]) if patient.given else ""
    family = fold(patient.family)
    found = {"mrn"}
    for word in question_words(question):
        folded = fold(word)
        if word in patient.identifiers or any(
            part
            and (folded == part or (len(part) >= MIN_TYPO_LENGTH and within_one_edit(folded, part)))
            for part in (given, family)
        ):
            found.add(folded)
            found.add(word.lower())
            found.update(fold(part) for part in re.findall(r"[^\W_]+", word))
    return frozenset(found)


def patients_matching(question: str, patients: Iterable[NamedPatient]) -> list[NamedPatient]:
    """The patients the question names at the strongest strength any of them reaches."""
    words = question_words(question)
    if not words:
        return []
    best = 0
    found: list[NamedPatient] = []
    for patient in patients:
        strength = match_strength(patient, words)
        if strength > best:
            best, found = strength, [patient]
        elif strength and strength == best:
            found.append(patient)
    return found


# --- A patient's records, section by section ---------------------------------------------------

# The sections clinical records are rendered in (ingest/parsers/clinical.py) and those of
# Synthea's text export; the text before the first one is the header ("HEADER").
SECTION_NAMES = frozenset(
    """DEMOGRAPHICS ALLERGIES MEDICATIONS PROBLEMS CONDITIONS OBSERVATIONS REPORTS PROCEDURES
    IMMUNIZATIONS ENCOUNTERS NOTES""".split()
) | {
    "CURRENT MEDICATIONS",
    "PAST MEDICATIONS",
    "LATEST RESULTS AND VITALS",
    "RESULTS AND VITALS",
    "CARE PLANS",
    "IMAGING STUDIES",
}
_SECTION_LINE = re.compile(r"^([A-Z][A-Z /]{2,40}):?[ \t]*$", re.MULTILINE)
_NOT_A_FACT = re.compile(r"^(Patient: .*|[-=]{3,}|\s*)$")


@dataclass(frozen=True)
class RecordLine:
    """One fact line of a patient's document: its text and where it stands in Document.text."""

    document_id: int
    section: str
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class RecordDocument:
    """One of a patient's documents, split into its sections' fact lines."""

    document_id: int
    name: str
    mime_type: str
    sections: dict[str, list[RecordLine]]

    @property
    def structured(self) -> bool:
        """Whether the document is a record in sections (FHIR, C-CDA, a Synthea text export),
        so that a section it lacks says the record holds nothing of that kind."""
        return any(name != "HEADER" for name in self.sections)


def record_documents(document_ids: Sequence[int]) -> list[RecordDocument]:
    """The patient's ready documents as sections of fact lines, structured records first."""
    from .models import Document

    documents = Document.objects.filter(
        pk__in=list(document_ids), status=Document.Status.READY
    ).only("id", "name", "mime_type", "text")
    found = [_split(d.id, d.name, d.mime_type, d.text) for d in documents]
    # Rendered records (one fact a line, values unrounded) before text exports.
    found.sort(key=lambda d: (d.mime_type.startswith("text/"), d.document_id))
    return found


def _split(document_id: int, name: str, mime_type: str, text: str) -> RecordDocument:
    marks = [m for m in _SECTION_LINE.finditer(text) if m.group(1).strip() in SECTION_NAMES]
    bounds = [("HEADER", 0, marks[0].start() if marks else len(text))]
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        bounds.append((mark.group(1).strip(), mark.end(), end))
    sections: dict[str, list[RecordLine]] = {}
    for section, start, end in bounds:
        lines = sections.setdefault(section, [])
        offset = start
        for raw in text[start:end].split("\n"):
            line_start, offset = offset, offset + len(raw) + 1
            if _NOT_A_FACT.match(raw):
                continue
            if raw.startswith("           ") and lines:
                # Synthea's text export continues a fact on indented lines ("- Systolic ...").
                last = lines[-1]
                lines[-1] = RecordLine(
                    document_id,
                    section,
                    last.start,
                    line_start + len(raw),
                    f"{last.text}; {raw.strip().lstrip('- ')}",
                )
                continue
            lines.append(RecordLine(document_id, section, line_start, line_start + len(raw), raw))
    return RecordDocument(document_id, name, mime_type, sections)


def line_passages(lines: Sequence[RecordLine]) -> list[ChunkHit]:
    """The passages (chunks) that hold `lines`, one per distinct chunk, in the lines' order:
    what an answer quoting those lines cites."""
    from .models import Chunk
    from .selectors import ChunkHit

    # One query per document for the chunks around all its lines (not one per line).
    chunks: dict[int, list[Chunk]] = {}
    for document_id in dict.fromkeys(line.document_id for line in lines):
        mine = [line for line in lines if line.document_id == document_id]
        chunks[document_id] = list(
            Chunk.objects.filter(
                document_id=document_id,
                start__lt=max(line.end for line in mine),
                end__gt=min(line.start for line in mine),
            )
            .select_related("document")
            .defer("embedding", "document__text")
        )
    hits: dict[int, ChunkHit] = {}
    for line in lines:
        # The chunk holding the whole line if there is one, else the one holding most of it.
        chunk = max(
            (c for c in chunks[line.document_id] if c.start < line.end and c.end > line.start),
            key=lambda c: (min(c.end, line.end) - max(c.start, line.start), -c.start),
            default=None,
        )
        if chunk is None or chunk.pk in hits:
            continue
        document = chunk.document
        hits[chunk.pk] = ChunkHit(
            chunk_id=chunk.pk,
            document_id=document.pk,
            document_name=document.name,
            source_path=document.source_path,
            collection_id=chunk.collection_id,
            text=chunk.text,
            start=chunk.start,
            end=chunk.end,
            page=chunk.page,
            heading=chunk.heading,
            score=1.0,
            similarity=1.0,
            text_rank=1.0,
            document_sha256=document.sha256,
            patient_id=document.patient_id,
            sources=tuple(chunk.sources or ()),
        )
    return list(hits.values())

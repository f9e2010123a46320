"""Answer HTML: the answer text escaped with each [n] a link to its passage, passages with the
question's words marked, and the context the answer fragment template needs; the collection
page's documents and patients as shown (identifiers redacted for users without
view_identifiers, REDACT_IDENTIFIERS)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from ingest.redaction import redact as redact_text

from .text import CITATION, content_words

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ingest.models import Document, Patient

    from .models import Answer, Citation


def citations_to_links(text: str, *, valid: set[int] | dict[int, str]) -> SafeString:
    """Escape `text`, then turn each [n] naming a shown passage into a link: to the URL given
    for n (the document viewer), or to the passage's entry in the sources list."""

    def link(match: re.Match[str]) -> str:
        n = int(match.group(1))
        if n not in valid:
            return match.group(0)
        href = valid[n] if isinstance(valid, dict) else f"#source-{n}"
        return f'<a class="cite" href="{escape(href)}" data-n="{n}">[{n}]</a>'

    return mark_safe(CITATION.sub(link, str(escape(text))))  # noqa: S308


def viewer_url(citation: Citation) -> str:
    if citation.document_id is None or citation.chunk_id is None:
        return f"#source-{citation.n}"
    return reverse("portal:document", args=[citation.document_id]) + (
        f"?chunk={citation.chunk_id}#passage"
    )


def answer_html(answer: Answer, *, redact: bool = False) -> SafeString:
    """The answer text escaped, each [n] a link to its passage in the document viewer."""
    return citations_to_links(
        redact_text(answer.text) if redact else answer.text,
        valid={c.n: viewer_url(c) for c in answer.citations.all()},
    )


def highlight(text: str, question: str) -> SafeString:
    """Escape a passage and mark the words it shares with the question."""
    words = sorted({w for w in content_words(question) if len(w) >= 3}, key=len, reverse=True)
    escaped = str(escape(text))
    if not words:
        return mark_safe(escaped)  # noqa: S308
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\w*", re.IGNORECASE)
    return mark_safe(pattern.sub(r"<mark>\g<0></mark>", escaped))  # noqa: S308


def answer_context(answer: Answer, *, redact: bool = False) -> dict[str, Any]:
    """What the answer fragment template needs (the answer page and the stream's last event).

    With `redact`, identifiers in the answer, its sentences and its passages are replaced."""
    citations = list(answer.citations.select_related("chunk").defer("chunk__embedding"))
    question = answer.question
    shown = redact_text if redact else str
    return {
        "question": question,
        "answer": answer,
        "answer_html": answer_html(answer, redact=redact),
        "unsupported": [
            shown(str(u.get("sentence", ""))) for u in answer.unsupported if isinstance(u, dict)
        ],
        "citations": [
            {
                "c": c,
                "url": viewer_url(c),
                "html": highlight(shown(c.text), question.text),
                "document": name_shown(c.document_name, redact=redact),
                "heading": shown(c.heading),
                # Clinical records: the resources / entries the passage's facts came from.
                "sources": [shown(s) for s in c.chunk.sources] if c.chunk is not None else [],
            }
            for c in citations
        ],
    }


def name_shown(name: str, *, redact: bool) -> str:
    """A document or file name as shown: hospital file names hold patient names and ids
    ("Abel832_Muller251_<id>.json"), redacted loosely, as typed text is."""
    return redact_text(name, loose=True) if redact else name


def document_rows(documents: Iterable[Document], *, redact: bool) -> list[dict[str, Any]]:
    """The collection page's documents: each with its name, its e-mail's name (attachments),
    its path in an uploaded archive (when not just its name) and its status message (which
    may quote a path), as shown."""
    return [
        {
            "d": d,
            "name": name_shown(d.name, redact=redact),
            "message": name_shown(d.status_message, redact=redact),
            "parent": name_shown(d.parent.name, redact=redact) if d.parent else "",
            "source_path": name_shown(d.source_path, redact=redact)
            if d.source_path and d.source_path != d.name
            else "",
        }
        for d in documents
    ]


def patient_rows(patients: Iterable[Patient], *, redact: bool) -> list[dict[str, Any]]:
    """The collection page's patients: name, birth date, gender, MRNs (and untyped ids) and
    records. With `redact`, a patient is shown by number, with placeholders for the rest."""
    rows = []
    for p in patients:
        ids = [
            (str(i.get("type") or ""), str(i.get("value") or ""))
            for i in p.identifiers
            if isinstance(i, dict) and i.get("type") in {"MRN", "", None}
        ]
        born = p.birth_date.isoformat() if p.birth_date else ""
        rows.append(
            {
                "id": p.id,
                "name": "[NAME]" if redact else p.name,
                "birth_date": "[DOB]" if redact and born else born,
                "gender": p.gender,
                "identifiers": [_identifier_shown(k, v, redact=redact) for k, v in ids],
                "documents": [name_shown(d.name, redact=redact) for d in p.documents.all()],
            }
        )
    return rows


def _identifier_shown(kind: str, value: str, *, redact: bool) -> str:
    shown = ("[MRN]" if kind == "MRN" else "[ID]") if redact else value
    return f"{kind} {shown}" if kind else shown

"""Shared set-up for the redaction attacks (issue 19): a hospital collection holding a real
Synthea patient's FHIR bundle and text export under their hospital file names, the patient's
identifiers as the secrets no user without `assistant.view_identifiers` may see, and a leak
finder that also catches a name typed without the digits Synthea adds."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from assistant import actions
from audit import checkpoints
from ingest.models import Chunk, Patient
from ingest.pipeline import document_ingest
from tests.conftest import EVAL

if TYPE_CHECKING:
    from pathlib import Path

    from django.http import HttpResponseBase

    from ingest.models import Collection, Document

RECORDS = EVAL / "records"
ABEL = "Abel832_Muller251_b2990df4-91a3-49bc-8243-0f31889d430f"
LISANDRA = "Lisandra920_Schroeder447_5391757e-f451-f2fe-d2f0-90a839d4d9c4"


def upload(collection: Collection, path: Path) -> Document:
    """Upload through the audited action (so the trail says "Uploaded <name>") and ingest."""
    document, _ = actions.document_upload(
        collection=collection, name=path.name, data=path.read_bytes(), enqueue=False
    )
    document_ingest(document_id=document.id)
    document.refresh_from_db()
    assert document.status == "ready", document.status_message
    return document


def secrets(collection: Collection) -> dict[str, str]:
    """Every known patient's names, birth date and identifier values in the collection, and
    the FHIR resource ids their records cite ("Patient/<id>")."""
    found: dict[str, str] = {}
    for patient in Patient.objects.filter(collection=collection):
        found[f"#{patient.pk} given name"] = patient.given
        found[f"#{patient.pk} family name"] = patient.family
        if patient.birth_date:
            found[f"#{patient.pk} birth date"] = patient.birth_date.isoformat()
        for n, item in enumerate(patient.identifiers):
            found[f"#{patient.pk} identifier {n} {item.get('type') or ''}".strip()] = item["value"]
    for sources in Chunk.objects.filter(collection=collection).values_list("sources", flat=True):
        for source in sources or []:
            if source.startswith("Patient/"):
                found["FHIR patient resource id"] = source.removeprefix("Patient/")
    return found


def _name_pattern(name: str) -> re.Pattern[str]:
    """A name as people write it: any case, with or without the digits a source adds."""
    letters = name.rstrip("0123456789")
    return re.compile(rf"(?i)(?<![a-z]){re.escape(letters)}\d*(?![a-z])")


def leaks(text: str, values: dict[str, str]) -> list[str]:
    """The secrets `text` shows: names loosely (see _name_pattern), the rest as stored."""
    shown = []
    for what, value in values.items():
        if what.endswith(" name"):
            if _name_pattern(value).search(text):
                shown.append(what)
        elif value.lower() in text.lower():
            shown.append(what)
    return shown


def body(response: HttpResponseBase, *, own: str = "") -> str:
    """The whole response as a user receives it: headers that name a file, and the body
    (streams read to the end), less `own`: the question the user typed, shown back to them."""
    if getattr(response, "streaming", False):
        content = b"".join(response.streaming_content)
    else:
        content = response.content
    text = response.get("Content-Disposition", "") + "\n" + content.decode(errors="replace")
    return text.replace(own, "") if own else text


def sign(tmp_path: Path, settings) -> None:
    """A real signing key, so receipts and answer records are served."""
    key = checkpoints.key_generate(directory=tmp_path / "keys")
    settings.AUDIT_SIGNING_KEY = ""
    settings.AUDIT_SIGNING_KEY_FILE = key.private_path
    settings.AUDIT_CHECKPOINT_DIR = tmp_path / "checkpoints"

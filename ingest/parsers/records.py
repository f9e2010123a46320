"""Clinical record formats, told apart by content (not by file name): FHIR JSON/NDJSON,
C-CDA XML and Synthea's text export. `ingest.parsers` consults `detect_record` first."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import ccda, fhir, synthea_text

if TYPE_CHECKING:
    from collections.abc import Callable

    from .base import ParsedDocument

RECORD_PARSERS: dict[str, Callable[[bytes], ParsedDocument]] = {
    fhir.FHIR_JSON: lambda data: fhir.parse_fhir(data, fhir.FHIR_JSON),
    fhir.FHIR_NDJSON: lambda data: fhir.parse_fhir(data, fhir.FHIR_NDJSON),
    ccda.CCDA: ccda.parse_ccda,
    synthea_text.SYNTHEA_TEXT: synthea_text.parse_synthea_text,
}


def detect_record(data: bytes) -> str:
    """The record format's type, or "" when the bytes are not a clinical record we read."""
    if fhir_kind := fhir.sniff(data):
        return fhir_kind
    if ccda.sniff(data):
        return ccda.CCDA
    if synthea_text.sniff(data):
        return synthea_text.SYNTHEA_TEXT
    return ""

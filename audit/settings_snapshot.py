"""Settings that change what answers users get are audited when they change.

Settings come from the environment, so a change shows up at the next start: `make run`
(and the docker-compose migrate step) run `manage.py audit snapshot-settings`, which compares
the current values with the last recorded snapshot and records the difference.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from .append import audit_record
from .models import AuditEvent

BEHAVIOUR_SETTINGS = (
    "LLM_BACKEND",
    "LLM_BASE_URL",
    "LLM_MODEL",
    "LLM_TEMPERATURE",
    "LLM_MAX_TOKENS",
    "LLM_TIMEOUT",
    "EMBEDDING_MODEL",
    "CHUNK_SIZE",
    "CHUNK_OVERLAP",
    "RETRIEVAL_K",
    "RETRIEVAL_CANDIDATES",
    "RETRIEVAL_RRF_K",
    "RETRIEVAL_MIN_SIMILARITY",
    "UPLOAD_MAX_BYTES",
    "AUDIT_RETENTION_DAYS",
    "SESSION_COOKIE_AGE",
    "RETRIEVAL_VECTOR_WEIGHT",
    "RETRIEVAL_TEXT_WEIGHT",
    "RETRIEVAL_NEIGHBOURS",
    "RETRIEVAL_EF_SEARCH",
    "RETRIEVAL_TEXT_MAX_TERMS",
    "RETRIEVAL_TEXT_MAX_POSTINGS",
    "RETRIEVAL_TEXT_MAX_DF",
    "RETRIEVAL_MIN_TEXT_MATCH",
    "SUPPORT_THRESHOLD",
    "EMBEDDING_BACKEND",
    "EMBEDDING_ONNX_INT8",
    "REDACT_IDENTIFIERS",
    "OCR_LANGUAGES",
    "GATE_MIN_SIMILARITY",
    "GATE_MIN_COVERAGE",
    "GATE_MIN_TEXT_MATCH",
    "PATIENT_ANSWERS",
    "LLM_CONTEXT_TOKENS",
    "LLM_THINKING",
    "LLM_SYSTEM_ROLE",
    "LLM_STOP",
    "AUDIT_MODEL_REASONING",
)


def current_settings() -> dict[str, Any]:
    return {name: getattr(settings, name, None) for name in BEHAVIOUR_SETTINGS}


def settings_snapshot_record() -> bool:
    """Record the settings if they differ from the last snapshot; True when recorded."""
    current = current_settings()
    last = (
        AuditEvent.objects.filter(event_type=AuditEvent.Type.SETTINGS_CHANGED, redacted=False)
        .order_by("-id")
        .values_list("payload", flat=True)
        .first()
    )
    previous = (last or {}).get("settings") or {}
    # Compare through JSON so that 0.15 and 0.15 from the database are equal.
    import json

    if json.loads(json.dumps(current, default=str)) == previous:
        return False
    changed = {
        k: {"from": previous.get(k), "to": v}
        for k, v in json.loads(json.dumps(current, default=str)).items()
        if previous.get(k) != v
    }
    audit_record(
        event_type=AuditEvent.Type.SETTINGS_CHANGED,
        actor_username="system",
        summary="Settings changed: " + ", ".join(sorted(changed)),
        payload={"settings": current, "changed": changed},
    )
    return True

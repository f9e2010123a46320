"""Documents become passages: collections, documents, patients and chunks.

Owns uploads' storage and unpacking (`archives`), the parsers (PDF with OCR, DOCX, HTML,
e-mail, text, FHIR, C-CDA), chunking, embedding (sentence-transformers or ONNX Runtime), the
ingestion pipeline (`pipeline`) and its Celery task, search over chunks (`selectors`), patient
identities (`records`), row-level security and identifier redaction (`redaction`).

Imports neither `assistant` nor `audit`: its callers record what it did.
"""

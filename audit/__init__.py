"""Everything becomes evidence: the audit trail and what proves it was not altered.

Owns the trail's models (entries, chain checks, the Merkle tree, checkpoints), appending
(`append`: one entry or a batch, chained under one lock), verifying (`verify`, with worker
processes for long trails), erasure and retention (`erasure`), the RFC 6962 tree (`merkle`,
`tree`), signed checkpoints and receipts, and the compliance workspace (`compliance` reads,
`views`, templates, exports). Also the shape of sign-in and settings entries.

May import `ingest` (legal holds, patient reports); never `assistant`: whoever records an
entry puts in it what the entry must hold. `assistant` and management commands call it.
"""

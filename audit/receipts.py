"""Receipts: an audit entry's inclusion proof against a signed checkpoint (issue 9).

A receipt is plain JSON that `tools/verify_receipt.py` checks with the public key alone: the
entry's payload hash is leaf `leaf_index` of the tree whose root the checkpoint signs. The
record an entry's payload hash covers (`entry_record`) is offered beside it, so that whoever
holds the answer can show it is the one the receipt names.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings

from . import merkle, tree
from .canonical import canonical_document_of
from .checkpoints import SigningKeyMissing, checkpoint_message, load_signing_key
from .models import AuditCheckpoint, AuditEvent

FORMAT = "attest-receipt/1"


class ReceiptUnavailable(Exception):
    """No receipt (yet): `pending` when the next checkpoint will bring one."""

    def __init__(self, reason: str, *, pending: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.pending = pending


def receipt_for_event(event: AuditEvent) -> dict[str, Any]:
    """The receipt, or ReceiptUnavailable saying why there is none (yet)."""
    covering = AuditCheckpoint.objects.filter(tree_size__gt=event.seq)
    checkpoint = covering.order_by("-tree_size", "-id").first()
    if checkpoint is None:
        try:
            load_signing_key()
        except SigningKeyMissing as exc:
            raise ReceiptUnavailable(
                f"Receipts are unavailable: the audit trail is not being signed ({exc})."
            ) from exc
        raise ReceiptUnavailable(
            "Receipt pending: the next signed checkpoint (every "
            f"{settings.AUDIT_CHECKPOINT_SECONDS} s) will cover this entry.",
            pending=True,
        )
    try:
        proof = tree.tree_inclusion_proof(event.seq, checkpoint.tree_size)
    except tree.TreeIncomplete as exc:
        raise ReceiptUnavailable(
            "No receipt: the audit tree in the database is smaller than its signed checkpoint "
            "(entries are missing). Ask the compliance office to run `audit verify "
            "--checkpoints`."
        ) from exc
    leaf = merkle.leaf_hash(bytes.fromhex(event.payload_hash))
    if not merkle.verify_inclusion(
        leaf, event.seq, checkpoint.tree_size, proof, bytes.fromhex(checkpoint.root_hash)
    ):
        # The stored tree disagrees with the signed root: never hand out a receipt that
        # cannot verify; `audit verify --checkpoints` will say what is wrong.
        raise ReceiptUnavailable(
            "No receipt: the stored audit tree does not match its signed checkpoint. "
            "Ask the compliance office to run `audit verify --checkpoints`."
        )
    return {
        "format": FORMAT,
        "audit_id": event.id,
        "event_type": event.event_type,
        "created_at": event.created_at.isoformat(),
        "redacted": event.redacted,
        "payload_hash": event.payload_hash,
        "leaf_index": event.seq,
        "leaf_hash": leaf.hex(),
        "inclusion_proof": [h.hex() for h in proof],
        "checkpoint": {
            "format": "attest-checkpoint/1",
            "tree_size": checkpoint.tree_size,
            "root_hash": checkpoint.root_hash,
            "timestamp": checkpoint.timestamp,
            "key_id": checkpoint.key_id,
            "signature": checkpoint.signature,
            "file": checkpoint.file_name,
            "signed_text": checkpoint_message(
                tree_size=checkpoint.tree_size,
                root_hash=checkpoint.root_hash,
                timestamp=checkpoint.timestamp,
                key_id=checkpoint.key_id,
            ).decode(),
        },
        "key_id": checkpoint.key_id,
    }


def entry_record(event: AuditEvent) -> bytes:
    """The exact bytes whose SHA-256 is the entry's payload hash (not for redacted entries)."""
    if event.redacted:
        raise ReceiptUnavailable("This entry was erased; only its hash is kept.")
    document = canonical_document_of(event)
    if hashlib.sha256(document).hexdigest() != event.payload_hash:
        raise ReceiptUnavailable("This entry no longer matches its hash; run `audit verify`.")
    return document

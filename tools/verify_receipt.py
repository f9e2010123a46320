#!/usr/bin/env python3
"""Verify an Attest audit receipt offline.

    python verify_receipt.py RECEIPT.json --public-key audit_ed25519.pub [--payload RECORD.json]

Needs only the Python standard library and the `cryptography` package: no Attest, no Django, no
database, no network. Copy this one file wherever the check must be made.

It checks that
1. the checkpoint in the receipt is signed by the given Ed25519 public key (the one the
   compliance office kept), and names that key's id;
2. the receipt's inclusion proof places the entry's payload hash at its leaf index in the RFC 6962
   Merkle tree whose root the checkpoint signs;
3. with --payload, that the answer record file hashes (SHA-256) to the receipt's payload hash.

It prints only what it checked: the leaf index, the tree size, the signing time and key, and,
with --payload, the record's event type, time and actor (covered by the hash). The receipt's
own `audit_id`, `event_type` and `created_at` fields are covered by nothing and not repeated.

Exit status 0 and one sentence when the receipt holds; 1 and the reason when it does not;
2 when a file cannot be read.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

RECEIPT_FORMAT = "attest-receipt/1"
CHECKPOINT_FORMAT = "attest-checkpoint/1"
# DER SubjectPublicKeyInfo of an Ed25519 key (RFC 8410): this prefix, then the key's 32 bytes.
# Read by hand: cryptography's PEM loader imports its SSH module too (15 ms of a 50 ms run).
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


class Fails(Exception):
    """The receipt does not hold; the message says why."""


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> bool:
    """RFC 9162, section 2.1.3.2."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def load_public_key(path: Path) -> Ed25519PublicKey:
    """PEM (as `audit keygen` writes it) or the base64 of the key's 32 raw bytes."""
    text = path.read_text().strip()
    if text.startswith("-----BEGIN PUBLIC KEY-----") and text.endswith("-----END PUBLIC KEY-----"):
        body = "".join(text.splitlines()[1:-1])
        der = base64.b64decode(body, validate=True)
        if len(der) != 44 or not der.startswith(ED25519_SPKI_PREFIX):
            raise ValueError(f"{path} is not an Ed25519 public key")
        return Ed25519PublicKey.from_public_bytes(der[len(ED25519_SPKI_PREFIX) :])
    if text.startswith("-----BEGIN"):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))


def _hex32(value: object, what: str) -> bytes:
    try:
        raw = bytes.fromhex(str(value))
    except ValueError as exc:
        raise Fails(f"{what} is not hexadecimal") from exc
    if len(raw) != 32:
        raise Fails(f"{what} is not a SHA-256 hash")
    return raw


def _int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Fails(f"{what} is not a non-negative whole number")
    return value


def verify(receipt: dict, public_key: Ed25519PublicKey, payload: bytes | None) -> str:
    """The sentence to print when the receipt holds; raises Fails otherwise."""
    if not isinstance(receipt, dict) or receipt.get("format") != RECEIPT_FORMAT:
        raise Fails(f"this is not an {RECEIPT_FORMAT} receipt")
    checkpoint = receipt.get("checkpoint")
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise Fails("the receipt carries no checkpoint")
    raw_key = public_key.public_bytes_raw()
    key_id = hashlib.sha256(raw_key).hexdigest()[:16]
    if checkpoint.get("key_id") != key_id or receipt.get("key_id") != key_id:
        raise Fails(
            f"the checkpoint was signed with key {checkpoint.get('key_id')}, "
            f"but the public key given is key {key_id}"
        )
    size = _int(checkpoint.get("tree_size"), "the checkpoint's tree size")
    root = _hex32(checkpoint.get("root_hash"), "the checkpoint's root hash")
    timestamp = str(checkpoint.get("timestamp"))
    message = (
        f"{CHECKPOINT_FORMAT}\ntree_size {size}\nroot {root.hex()}\n"
        f"time {timestamp}\nkey {key_id}\n"
    ).encode()
    try:
        signature = base64.b64decode(str(checkpoint.get("signature")), validate=True)
        public_key.verify(signature, message)
    except (InvalidSignature, ValueError) as exc:
        raise Fails(
            "the checkpoint's signature does not verify: it was altered or not signed by this key"
        ) from exc
    payload_hash = _hex32(receipt.get("payload_hash"), "the payload hash")
    index = _int(receipt.get("leaf_index"), "the leaf index")
    proof_hex = receipt.get("inclusion_proof")
    if not isinstance(proof_hex, list):
        raise Fails("the receipt carries no inclusion proof")
    proof = [_hex32(h, f"proof hash {i + 1}") for i, h in enumerate(proof_hex)]
    leaf = hashlib.sha256(b"\x00" + payload_hash).digest()
    if not verify_inclusion(leaf, index, size, proof, root):
        raise Fails(
            f"the inclusion proof does not lead from leaf {index} to the signed root of the "
            f"tree of {size} entries: the receipt was altered"
        )
    sentence = (
        f"The receipt holds: payload hash {payload_hash.hex()[:16]}... is leaf {index} of the "
        f"audit tree of {size} entries whose root was signed at {timestamp} by key {key_id}"
    )
    if payload is None:
        # The receipt's audit_id, event_type and created_at are not covered by the signature
        # or the proof: they are not repeated as if they had been checked.
        return sentence + "."
    record = _record_matching(payload, payload_hash)
    what = f"event {record.get('event_type')} at {record.get('created_at')}"
    if record.get("actor"):
        what += f" by {record.get('actor')}"
    return f"{sentence}, and the record given is that leaf's record ({what})."


def _record_matching(payload: bytes, payload_hash: bytes) -> dict:
    """The record file parsed, once it is known to hash to the receipt's payload hash."""
    digests = {hashlib.sha256(payload).hexdigest()}
    record: dict = {}
    try:  # a record that was re-saved: hash its canonical form as Attest does
        parsed = json.loads(payload)
        canonical = json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digests.add(hashlib.sha256(canonical.encode()).hexdigest())
        record = parsed if isinstance(parsed, dict) else {}
    except ValueError:
        pass
    if payload_hash.hex() not in digests:
        raise Fails("the answer record does not hash to the receipt's payload hash")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify an Attest audit receipt offline.")
    parser.add_argument("receipt", type=Path, help="the receipt (JSON)")
    parser.add_argument("--public-key", type=Path, required=True, help="the audit public key")
    parser.add_argument("--payload", type=Path, help="the answer record the receipt covers")
    args = parser.parse_args(argv)
    try:
        receipt = json.loads(args.receipt.read_text(encoding="utf-8"))
        public_key = load_public_key(args.public_key)
        payload = args.payload.read_bytes() if args.payload else None
    except (OSError, ValueError) as exc:
        print(f"Cannot check the receipt: {exc}", file=sys.stderr)
        return 2
    try:
        print(verify(receipt, public_key, payload))
    except Fails as exc:
        print(f"The receipt does NOT hold: {exc}.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

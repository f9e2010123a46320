"""Signed checkpoints of the audit tree, kept outside the database (issue 9).

A checkpoint is (tree size, root hash, UTC time, key id), signed with Ed25519. The signed bytes
are the text `checkpoint_message` returns; `tools/verify_receipt.py` rebuilds them with the
standard library alone. Each checkpoint is one JSON file in AUDIT_CHECKPOINT_DIR, which also
lists, unsigned, the payload hashes of the entries added since the previous checkpoint: they do
not need a signature (they must reproduce the signed root), and they let verification name the
exact entry a database superuser altered.

The private key comes from AUDIT_SIGNING_KEY or AUDIT_SIGNING_KEY_FILE, never the database.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings

from . import tree, writer
from .models import AuditCheckpoint

logger = logging.getLogger(__name__)

FORMAT = "attest-checkpoint/1"
KEY_FILE_NAME = "audit_ed25519"
# A checkpoint lists the payload hashes it adds only up to this many (about 6.5 MB of JSON);
# past it, a mismatch is narrowed to the range between two checkpoints.
MAX_LISTED_LEAVES = 100_000


class SigningKeyMissing(Exception):
    """No audit signing key is configured; the message says what to do."""


# --- keys ------------------------------------------------------------------------------------
def public_key_raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """The first 8 bytes of SHA-256 over the raw 32-byte public key, as hex."""
    return hashlib.sha256(public_key_raw(public_key)).hexdigest()[:16]


def _private_from_text(text: str) -> Ed25519PrivateKey:
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("not an Ed25519 private key")
        return key
    seed = base64.b64decode(text, validate=True)
    if len(seed) != 32:
        raise ValueError("an Ed25519 seed is 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(seed)


def load_public_key(path: Path | str) -> Ed25519PublicKey:
    """A public key file: PEM (as `audit keygen` writes) or the base64 of the 32 raw bytes."""
    text = Path(path).read_text().strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{path} is not an Ed25519 public key")
        return key
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))


def load_signing_key() -> Ed25519PrivateKey:
    """The configured private key, or SigningKeyMissing saying why there is none."""
    if settings.AUDIT_SIGNING_KEY:
        try:
            return _private_from_text(settings.AUDIT_SIGNING_KEY)
        except ValueError as exc:
            raise SigningKeyMissing(f"AUDIT_SIGNING_KEY is not a usable key: {exc}") from exc
    path = Path(settings.AUDIT_SIGNING_KEY_FILE)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SigningKeyMissing(
            f"no audit signing key: {path} cannot be read ({exc.strerror or exc}); create one "
            "with `python manage.py audit keygen --out DIR` and set AUDIT_SIGNING_KEY_FILE"
        ) from exc
    try:
        return _private_from_text(text)
    except ValueError as exc:
        raise SigningKeyMissing(f"{path} is not a usable Ed25519 key: {exc}") from exc


@dataclass(frozen=True)
class GeneratedKey:
    private_path: Path
    public_path: Path
    public_base64: str
    key_id: str


def key_generate(*, directory: Path) -> GeneratedKey:
    """Write DIR/audit_ed25519 (PKCS#8 PEM, mode 0600) and DIR/audit_ed25519.pub (PEM).

    Refuses to overwrite an existing key: checkpoints signed with it would become unverifiable
    for anyone who kept only the new public key."""
    directory.mkdir(parents=True, exist_ok=True)
    private_path = directory / KEY_FILE_NAME
    public_path = directory / (KEY_FILE_NAME + ".pub")
    if private_path.exists() or public_path.exists():
        raise FileExistsError(f"{private_path} already exists; not overwriting an audit key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public = key.public_key()
    public_path.write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return GeneratedKey(
        private_path=private_path,
        public_path=public_path,
        public_base64=base64.b64encode(public_key_raw(public)).decode(),
        key_id=key_id_of(public),
    )


# --- checkpoints -----------------------------------------------------------------------------
def checkpoint_message(*, tree_size: int, root_hash: str, timestamp: str, key_id: str) -> bytes:
    """The exact bytes that are signed."""
    return (
        f"{FORMAT}\ntree_size {tree_size}\nroot {root_hash}\ntime {timestamp}\nkey {key_id}\n"
    ).encode()


@dataclass
class Checkpoint:
    tree_size: int
    root_hash: str
    timestamp: str
    key_id: str
    signature: str
    leaves_from: int | None = None
    leaf_payload_hashes: list[str] | None = None
    file_name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def message(self) -> bytes:
        return checkpoint_message(
            tree_size=self.tree_size,
            root_hash=self.root_hash,
            timestamp=self.timestamp,
            key_id=self.key_id,
        )

    def signed_part(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "timestamp": self.timestamp,
            "key_id": self.key_id,
            "signature": self.signature,
        }

    def as_file(self) -> dict[str, Any]:
        body = self.signed_part()
        if self.leaf_payload_hashes is not None:
            body["leaves_from"] = self.leaves_from
            body["leaf_payload_hashes"] = self.leaf_payload_hashes
        return body

    def signature_problem(self, public_key: Ed25519PublicKey) -> str:
        """'' when the signature holds under `public_key`, else why not."""
        if self.key_id != key_id_of(public_key):
            return f"signed with key {self.key_id}, not with the given key {key_id_of(public_key)}"
        try:
            public_key.verify(base64.b64decode(self.signature, validate=True), self.message())
        except (InvalidSignature, ValueError):
            return "the signature does not verify: the file was altered or signed with another key"
        return ""

    @classmethod
    def from_dict(cls, data: Any, *, file_name: str = "") -> Checkpoint:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not an {FORMAT} document")
        try:
            tree_size = data["tree_size"]
            root_hash = data["root_hash"]
            if not isinstance(tree_size, int) or tree_size < 0:
                raise ValueError("tree_size must be a non-negative integer")
            if not isinstance(root_hash, str) or len(bytes.fromhex(root_hash)) != 32:
                raise ValueError("root_hash must be 64 hex digits")
            leaves = data.get("leaf_payload_hashes")
            return cls(
                tree_size=tree_size,
                root_hash=root_hash,
                timestamp=str(data["timestamp"]),
                key_id=str(data["key_id"]),
                signature=str(data["signature"]),
                leaves_from=data.get("leaves_from") if leaves is not None else None,
                leaf_payload_hashes=list(leaves) if isinstance(leaves, list) else None,
                file_name=file_name,
            )
        except KeyError as exc:
            raise ValueError(f"missing field {exc.args[0]!r}") from exc


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def checkpoint_sign(
    key: Ed25519PrivateKey,
    *,
    tree_size: int,
    root_hash: str,
    leaves_from: int | None = None,
    leaf_payload_hashes: list[str] | None = None,
) -> Checkpoint:
    """Sign (size, root, now, key id); the listed payload hashes travel unsigned beside it."""
    key_id = key_id_of(key.public_key())
    timestamp = _now_iso()
    message = checkpoint_message(
        tree_size=tree_size, root_hash=root_hash, timestamp=timestamp, key_id=key_id
    )
    return Checkpoint(
        tree_size=tree_size,
        root_hash=root_hash,
        timestamp=timestamp,
        key_id=key_id,
        signature=base64.b64encode(key.sign(message)).decode(),
        leaves_from=leaves_from,
        leaf_payload_hashes=leaf_payload_hashes,
    )


def checkpoint_store(checkpoint: Checkpoint, *, directory: Path | None = None) -> Path:
    """Write the checkpoint's file (atomically: a reader never sees half a file) and index it."""
    directory = Path(directory or settings.AUDIT_CHECKPOINT_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = checkpoint.timestamp.replace("-", "").replace(":", "").replace(".", "")
    name = f"checkpoint-{checkpoint.tree_size:012d}-{stamp}.json"
    tmp = directory / f".{name}.tmp"
    tmp.write_text(json.dumps(checkpoint.as_file(), indent=1) + "\n")
    tmp.replace(directory / name)
    checkpoint.file_name = name
    AuditCheckpoint.objects.create(
        tree_size=checkpoint.tree_size,
        root_hash=checkpoint.root_hash,
        timestamp=checkpoint.timestamp,
        key_id=checkpoint.key_id,
        signature=checkpoint.signature,
        file_name=name,
    )
    return directory / name


def checkpoint_write(*, force: bool = False) -> Checkpoint | None:
    """Sign the current tree and write it to AUDIT_CHECKPOINT_DIR (and the index table).

    Returns None, writing nothing, when the tree has not grown since the last checkpoint and
    `force` is off. Raises SigningKeyMissing without a key."""
    key = load_signing_key()
    size = tree.tree_size()
    last = AuditCheckpoint.objects.order_by("-tree_size", "-id").first()
    if not force and (size == 0 or (last is not None and last.tree_size >= size)):
        return None
    # Appends may commit before their WAL is flushed (writer._AppendBatcher): flush it, so no
    # checkpoint signs an entry that a crash could still take away.
    writer.wal_flush()
    start = last.tree_size if last is not None and last.tree_size <= size else 0
    listed = None
    if size - start <= MAX_LISTED_LEAVES:
        from .models import AuditEvent

        listed = list(
            AuditEvent.objects.filter(seq__gte=start, seq__lt=size)
            .order_by("seq")
            .values_list("payload_hash", flat=True)
        )
    checkpoint = checkpoint_sign(
        key,
        tree_size=size,
        root_hash=tree.tree_root(size).hex(),
        leaves_from=start if listed is not None else None,
        leaf_payload_hashes=listed,
    )
    checkpoint_store(checkpoint)
    if settings.AUDIT_WITNESS_URL:
        _send_to_witness(checkpoint)
    return checkpoint


def _send_to_witness(checkpoint: Checkpoint) -> None:
    """POST the signed part to the witness; a failure is logged, never fatal (the file stands)."""
    request = urllib.request.Request(  # noqa: S310 - an operator-configured URL
        settings.AUDIT_WITNESS_URL,
        data=json.dumps(checkpoint.signed_part()).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5):  # noqa: S310
            pass
    except OSError as exc:
        logger.warning("audit checkpoint %s not sent to the witness: %s", checkpoint.tree_size, exc)


def checkpoints_read(directory: Path) -> tuple[list[Checkpoint], list[tuple[str, str]]]:
    """Every checkpoint file in `directory`, and (file name, problem) for those unreadable."""
    good: list[Checkpoint] = []
    bad: list[tuple[str, str]] = []
    for path in sorted(directory.glob("*.json")):
        try:
            good.append(Checkpoint.from_dict(orjson.loads(path.read_bytes()), file_name=path.name))
        except (OSError, ValueError) as exc:
            bad.append((path.name, f"unreadable checkpoint: {exc}"))
    return good, bad

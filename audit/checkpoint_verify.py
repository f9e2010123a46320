"""`audit verify --checkpoints DIR --public-key FILE`: the trail against its signed checkpoints.

What it proves: every checkpoint file is signed by the given key; the database's tree, rebuilt
from the entries themselves, has at each checkpoint's size the root that was signed then; the
chain holds. A superuser who alters an entry and recomputes every hash (chain and tree) fails
the first check past that entry; deleting the newest entries, or restoring an older backup,
leaves a checkpoint signing more entries than the database holds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import merkle
from .checkpoints import Checkpoint, checkpoints_read
from .verify import audit_verify

if TYPE_CHECKING:
    from pathlib import Path

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class CheckpointSink:
    """Compares the tree rebuilt from the entries with each signed root as the stream passes
    that size. On a mismatch, the entries since the last matching checkpoint are compared
    with the payload hashes the failing checkpoint lists, to name the entry that changed."""

    def __init__(self, checkpoints: list[Checkpoint]) -> None:
        self.pending = sorted(checkpoints, key=lambda c: c.tree_size)
        self.next = 0
        self.matched = 0
        self.good_size = 0
        self.first_bad: dict[str, Any] | None = None
        self.next_size = -1
        self.keep_window = False
        empty = merkle.Frontier()
        while self.next < len(self.pending) and self.pending[self.next].tree_size == 0:
            self._compare(empty, [])
        self._advance()

    def _advance(self) -> None:
        if self.first_bad is None and self.next < len(self.pending):
            c = self.pending[self.next]
            self.next_size = c.tree_size
            # Keep the entries in between only when the checkpoint can name one of them.
            self.keep_window = c.leaf_payload_hashes is not None
        else:
            self.next_size = -1
            self.keep_window = False

    def at_size(self, frontier: merkle.Frontier, window: list[tuple[int, str]]) -> str:
        while (
            self.first_bad is None
            and self.next < len(self.pending)
            and self.pending[self.next].tree_size == frontier.size
        ):
            self._compare(frontier, window)
        self._advance()
        return self.first_bad["reason"] if self.first_bad else ""

    def _compare(self, frontier: merkle.Frontier, window: list[tuple[int, str]]) -> None:
        c = self.pending[self.next]
        self.next += 1
        size = frontier.size
        if frontier.root().hex() == c.root_hash:
            self.matched += 1
            self.good_size = size
            return
        listed = c.leaf_payload_hashes
        if listed is not None and c.leaves_from is not None:
            first_seq = size - len(window)
            for offset, (event_id, payload_hash) in enumerate(window):
                seq = first_seq + offset
                position = seq - c.leaves_from
                if 0 <= position < len(listed) and listed[position] != payload_hash:
                    self._fail(
                        kind="entry",
                        id=event_id,
                        seq=seq,
                        checkpoint=c.file_name,
                        reason=f"entry {event_id} (leaf {seq}) is not the entry that was "
                        f"signed: its payload hash differs from the one {c.file_name} lists, "
                        f"and the tree of {size} entries no longer has the root signed there",
                    )
                    return
        self._fail(
            kind="checkpoint",
            checkpoint=c.file_name,
            seq=self.good_size,
            reason=f"an entry between leaf {self.good_size} and leaf {size - 1} was altered: "
            f"the tree of {size} entries no longer has the root signed in {c.file_name}",
        )

    def finish(self, entries: int) -> None:
        if self.first_bad is not None or self.next >= len(self.pending):
            return
        c = self.pending[self.next]
        self._fail(
            kind="checkpoint",
            checkpoint=c.file_name,
            seq=entries,
            reason=f"checkpoint {c.file_name} signs {c.tree_size} entries but the database "
            f"holds only {entries}: entries from leaf {entries} on are missing (a truncated "
            "trail, or a restore from an older backup)",
        )

    def _fail(self, **details: Any) -> None:
        if self.first_bad is None:
            self.first_bad = {"kind": "entry", "id": None, "seq": None, "checkpoint": None}
            self.first_bad.update(details)


@dataclass
class CheckpointReport:
    entries: int
    redacted: int
    checkpoints: int
    checkpoint_files: int
    first_bad: dict[str, Any] | None
    seconds: float
    problems: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.first_bad is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "checkpoint_files": self.checkpoint_files,
            "redacted": self.redacted,
            "first_bad": self.first_bad,
            "reason": self.first_bad["reason"] if self.first_bad else "",
            "seconds": round(self.seconds, 3),
            "entries_per_second": round(self.entries / self.seconds) if self.seconds else None,
        }


@dataclass
class _CheckpointFiles:
    """The files in the folder: those whose signature holds, and what is wrong with the rest."""

    read: int
    valid: list[Checkpoint]
    problems: list[dict[str, Any]]


def _checkpoint_files(directory: Path, public_key: Ed25519PublicKey) -> _CheckpointFiles:
    checkpoints, unreadable = checkpoints_read(directory)
    problems: list[dict[str, Any]] = [
        {"kind": "checkpoint", "id": None, "seq": None, "checkpoint": name, "reason": reason}
        for name, reason in unreadable
    ]
    valid: list[Checkpoint] = []
    for c in checkpoints:
        problem = c.signature_problem(public_key)
        if problem:
            problems.append(
                {
                    "kind": "checkpoint",
                    "id": None,
                    "seq": None,
                    "checkpoint": c.file_name,
                    "reason": f"checkpoint {c.file_name}: {problem}",
                }
            )
        else:
            valid.append(c)
    problems.sort(key=lambda p: p["checkpoint"])
    return _CheckpointFiles(read=len(checkpoints) + len(unreadable), valid=valid, problems=problems)


def audit_verify_checkpoints(
    *, directory: Path, public_key: Ed25519PublicKey, record: bool = False
) -> CheckpointReport:
    """Verify every checkpoint file in `directory`, then the trail against the valid ones.

    The first problem reported is the first bad entry (in chain order); failing that, the first
    bad checkpoint file. Holds only when there is at least one checkpoint and all hold. The
    files are read while verify's worker processes start."""
    started = time.monotonic()
    made: list[tuple[_CheckpointFiles, CheckpointSink]] = []

    def make_sink() -> CheckpointSink:
        files = _checkpoint_files(directory, public_key)
        made.append((files, CheckpointSink(files.valid)))
        return made[0][1]

    chain = audit_verify(record=record, sink=make_sink)
    files, sink = made[0]
    if chain.ok:
        sink.finish(chain.entries)
    first_bad = sink.first_bad
    if first_bad is None and not chain.ok:
        first_bad = {
            "kind": "entry",
            "id": chain.first_broken_id or None,
            "seq": None,
            "checkpoint": None,
            "reason": chain.reason,
        }
    if first_bad is None and files.problems:
        first_bad = files.problems[0]
    if first_bad is None and not files.valid:
        first_bad = {
            "kind": "checkpoint",
            "id": None,
            "seq": None,
            "checkpoint": None,
            "reason": f"no checkpoint files in {directory}: nothing anchors the trail",
        }
    return CheckpointReport(
        entries=chain.entries,
        redacted=chain.redacted,
        checkpoints=sink.matched,
        checkpoint_files=files.read,
        first_bad=first_bad,
        seconds=time.monotonic() - started,
        problems=files.problems,
    )

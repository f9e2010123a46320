"""The audit trail's RFC 6962 Merkle tree, stored in PostgreSQL.

Leaf i is the entry with `seq = i`; its leaf hash is SHA-256(0x00 || payload_hash), so erasure
(which keeps `payload_hash`) leaves every root and proof unchanged. `assistant_audittreenode`
holds each complete subtree (level >= 1) once it closes, written inside the appending
transaction, under the chain's advisory lock, by the SQL function `attest_audit_tree_append`
(migration 0010, called by `attest_audit_append`). Because closed subtrees never change,
the root of any earlier size, and inclusion and consistency proofs up to the current size, come
from O(log n) rows read in two queries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from django.db import connection

from . import merkle

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

T = TypeVar("T")


class TreeIncomplete(Exception):
    """A node or leaf the computation needs is missing (the tree is smaller than asked)."""


def leaf_of(payload_hash: str) -> bytes:
    return merkle.leaf_hash(bytes.fromhex(payload_hash))


def _fetch_nodes(keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    keys = list(keys)
    if not keys:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n.level, n.index, n.hash FROM assistant_audittreenode n "
            "JOIN unnest(%s::smallint[], %s::bigint[]) AS k(level, index) "
            "ON n.level = k.level AND n.index = k.index",
            [[k[0] for k in keys], [k[1] for k in keys]],
        )
        return {(level, index): bytes(h) for level, index, h in cursor.fetchall()}


def _fetch(keys: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    table = _fetch_nodes(k for k in keys if k[0] > 0)
    leaves = [index for level, index in keys if level == 0]
    if leaves:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT seq, payload_hash FROM assistant_auditevent WHERE seq = ANY(%s)", [leaves]
            )
            for seq, payload_hash in cursor.fetchall():
                table[(0, seq)] = leaf_of(payload_hash)
    missing = keys - table.keys()
    if missing:
        raise TreeIncomplete(f"{len(missing)} tree node(s) missing, e.g. {min(missing)}")
    return table


def _run(algorithm: Callable[[merkle.NodeGetter], T]) -> T:
    """Run a merkle algorithm over the stored tree, fetching what it reads in two queries."""
    table = _fetch(merkle.needed_nodes(algorithm))
    return algorithm(lambda level, index: table[(level, index)])


def tree_size() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT max(seq) FROM assistant_auditevent")
        (top,) = cursor.fetchone()
    return 0 if top is None else top + 1


def tree_root(size: int) -> bytes:
    return _run(lambda get: merkle.root(get, size))


def tree_inclusion_proof(index: int, size: int) -> list[bytes]:
    return _run(lambda get: merkle.inclusion_proof(get, index, size))


def tree_consistency_proof(old_size: int, new_size: int) -> list[bytes]:
    return _run(lambda get: merkle.consistency_proof(get, old_size, new_size))

"""RFC 6962 (and RFC 9162) Merkle tree hashing, proofs and proof checks. Standard library only.

leaf hash = SHA-256(0x00 || leaf), node hash = SHA-256(0x01 || left || right). A tree of n leaves
splits at k, the largest power of two below n: MTH(D[n]) = H(0x01 || MTH(D[0:k]) || MTH(D[k:n])).

Every hash these functions need is a *complete* subtree: the 2**level leaves starting at
index * 2**level. The caller supplies them through `get(level, index)`, so the same code works
over the database's node table, a dict, or a list of leaves. `needed_nodes` runs an algorithm
once with a recorder, so a database caller can fetch every node in one query first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

NodeGetter = Callable[[int, int], bytes]
_sha256 = hashlib.sha256


def leaf_hash(leaf: bytes) -> bytes:
    return _sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def empty_root() -> bytes:
    return _sha256(b"").digest()


def _split(n: int) -> int:
    """The largest power of two strictly below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_hash(get: NodeGetter, start: int, end: int) -> bytes:
    """MTH(D[start:end]) where start is aligned to the largest power of two in the range."""
    size = end - start
    if size <= 0:
        raise ValueError("empty range")
    if size & (size - 1) == 0:
        level = size.bit_length() - 1
        if start % size:
            raise ValueError(f"range {start}..{end} is not aligned")
        return get(level, start >> level)
    k = _split(size)
    return node_hash(subtree_hash(get, start, start + k), subtree_hash(get, start + k, end))


def root(get: NodeGetter, size: int) -> bytes:
    """The root of the tree of the first `size` leaves."""
    return empty_root() if size == 0 else subtree_hash(get, 0, size)


def inclusion_proof(get: NodeGetter, index: int, size: int) -> list[bytes]:
    """RFC 6962 PATH(index, D[size]): sibling hashes from the leaf up."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    proof: list[bytes] = []

    def path(m: int, start: int, end: int) -> None:
        n = end - start
        if n == 1:
            return
        k = _split(n)
        if m - start < k:
            path(m, start, start + k)
            proof.append(subtree_hash(get, start + k, end))
        else:
            path(m, start + k, end)
            proof.append(subtree_hash(get, start, start + k))

    path(index, 0, size)
    return proof


def consistency_proof(get: NodeGetter, old_size: int, new_size: int) -> list[bytes]:
    """RFC 6962 PROOF(old_size, D[new_size])."""
    if not 0 < old_size <= new_size:
        raise ValueError(f"no consistency proof from {old_size} to {new_size}")
    proof: list[bytes] = []

    def sub(m: int, start: int, end: int, whole: bool) -> None:
        n = end - start
        if m == n:
            if not whole:
                proof.append(subtree_hash(get, start, end))
            return
        k = _split(n)
        if m <= k:
            sub(m, start, start + k, whole)
            proof.append(subtree_hash(get, start + k, end))
        else:
            sub(m - k, start + k, end, False)
            proof.append(subtree_hash(get, start, start + k))

    sub(old_size, 0, new_size, True)
    return proof


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Iterable[bytes], expected_root: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2: does `proof` place this leaf hash at `index` under the root?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2: is the tree of `new_size` an extension of that of `old_size`?"""
    if old_size == new_size:
        return not proof and old_root == new_root
    if not 0 < old_size < new_size or not proof:
        return False
    if old_size & (old_size - 1) == 0:
        proof = [old_root, *proof]
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


def complete_nodes_after_append(index: int) -> list[tuple[int, int]]:
    """The (level, index) of every complete subtree that leaf `index` closes, lowest first.

    Leaf n closes one subtree per trailing 1 bit of n: appending is O(log n) at worst and
    one node on average."""
    out = []
    level = 0
    while (index >> level) & 1:
        out.append((level + 1, index >> (level + 1)))
        level += 1
    return out


def needed_nodes(algorithm: Callable[[NodeGetter], object]) -> set[tuple[int, int]]:
    """Every (level, index) that `algorithm(get)` reads, found by running it on dummy hashes."""
    seen: set[tuple[int, int]] = set()

    def record(level: int, index: int) -> bytes:
        seen.add((level, index))
        return bytes(32)

    algorithm(record)
    return seen


class Frontier:
    """The complete subtrees of a growing tree (a compact range): O(log n) memory, O(1)
    amortised hashing per appended leaf; `root()` at any size. Used to recompute the tree
    while streaming entries."""

    __slots__ = ("_stack", "size")

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[bytes] = []

    def append(self, leaf: bytes) -> None:
        """Append a leaf *hash*."""
        h = leaf
        n = self.size
        stack = self._stack
        while n & 1:
            h = node_hash(stack.pop(), h)
            n >>= 1
        stack.append(h)
        self.size += 1

    def root(self) -> bytes:
        if not self._stack:
            return empty_root()
        r = self._stack[-1]
        for h in reversed(self._stack[:-1]):
            r = node_hash(h, r)
        return r


def list_getter(leaf_hashes: list[bytes]) -> NodeGetter:
    """A getter over leaf hashes held in memory (for tests and small trees)."""
    cache: dict[tuple[int, int], bytes] = {}

    def get(level: int, index: int) -> bytes:
        if level == 0:
            return leaf_hashes[index]
        key = (level, index)
        if key not in cache:
            cache[key] = node_hash(get(level - 1, 2 * index), get(level - 1, 2 * index + 1))
        return cache[key]

    return get

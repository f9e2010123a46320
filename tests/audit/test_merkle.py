"""RFC 6962 tree hashing and proofs (issue 9), against a direct transcription of the RFC."""

import hashlib

from audit import merkle


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, transcribed: the reference the incremental code must match."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


LEAVES = [hashlib.sha256(str(i).encode()).digest() for i in range(70)]
HASHES = [merkle.leaf_hash(x) for x in LEAVES]
GET = merkle.list_getter(HASHES)


def test_roots_match_the_rfc_definition_at_every_size():
    frontier = merkle.Frontier()
    assert frontier.root() == _mth([])
    for n in range(1, len(LEAVES) + 1):
        frontier.append(HASHES[n - 1])
        expected = _mth(LEAVES[:n])
        assert merkle.root(GET, n) == expected
        assert frontier.root() == expected


def test_every_inclusion_proof_verifies_and_a_changed_one_does_not():
    for n in range(1, 40):
        root = merkle.root(GET, n)
        for m in range(n):
            proof = merkle.inclusion_proof(GET, m, n)
            assert merkle.verify_inclusion(HASHES[m], m, n, proof, root)
            if proof:
                bad = [*proof]
                bad[0] = bytes(32)
                assert not merkle.verify_inclusion(HASHES[m], m, n, bad, root)
            if n > 1:
                assert not merkle.verify_inclusion(HASHES[(m + 1) % n], m, n, proof, root)


def test_every_consistency_proof_verifies_and_a_forked_tree_does_not():
    forked = [*HASHES]
    forked[3] = merkle.leaf_hash(b"altered")
    forked_get = merkle.list_getter(forked)
    for n in range(1, 34):
        for m in range(1, n + 1):
            proof = merkle.consistency_proof(GET, m, n)
            assert merkle.verify_consistency(m, n, merkle.root(GET, m), merkle.root(GET, n), proof)
            if m > 3:
                assert not merkle.verify_consistency(
                    m, n, merkle.root(forked_get, m), merkle.root(GET, n), proof
                )


def test_appending_closes_one_subtree_per_trailing_one_bit():
    assert merkle.complete_nodes_after_append(0) == []
    assert merkle.complete_nodes_after_append(1) == [(1, 0)]
    assert merkle.complete_nodes_after_append(7) == [(1, 3), (2, 1), (3, 0)]
    assert merkle.needed_nodes(lambda get: merkle.root(get, 6)) == {(2, 0), (1, 2)}

"""Issue 9: append an audit entry and its Merkle tree nodes in one server-side call.

`attest_audit_append` takes the chain's advisory lock, reads the last entry, computes
`entry_hash = sha256(prev_hash || payload_hash)`, inserts the entry and stores the RFC 6962
subtrees it closes (leaf = sha256(0x00 || payload_hash), node = sha256(0x01 || left || right)),
in the caller's transaction. The payload hash is computed in Python before the call (it is
taken over the canonical JSON document, which only Python produces). The hash definitions are
those of `assistant.audit` and `assistant.merkle`; tests check that both agree.
"""

from django.db import migrations

# One advisory lock for the whole chain: 0x41545445, "ATTE", as in assistant.audit.
TREE_APPEND = r"""
CREATE OR REPLACE FUNCTION attest_audit_tree_append(
    p_seq bigint, p_payload_hash text, p_prev_payload_hash text
) RETURNS void AS $$
DECLARE
    h bytea;
    sibling bytea;
    lvl integer := 0;
    i bigint := p_seq;
BEGIN
    -- Leaf p_seq closes one complete subtree per trailing 1 bit of p_seq. Its left sibling
    -- is the previous leaf at level 0 and, above, the stored node just left of it.
    IF i & 1 = 0 THEN
        RETURN;
    END IF;
    h := sha256('\x00'::bytea || decode(p_payload_hash, 'hex'));
    WHILE i & 1 = 1 LOOP
        IF lvl = 0 THEN
            sibling := sha256('\x00'::bytea || decode(p_prev_payload_hash, 'hex'));
        ELSE
            SELECT n.hash INTO sibling FROM assistant_audittreenode AS n
             WHERE n.level = lvl AND n.index = i - 1;
        END IF;
        IF sibling IS NULL THEN
            RAISE EXCEPTION 'the audit tree is incomplete: node %/% is missing', lvl, i - 1;
        END IF;
        h := sha256('\x01'::bytea || sibling || h);
        lvl := lvl + 1;
        i := i >> 1;
        INSERT INTO assistant_audittreenode (level, index, hash) VALUES (lvl, i, h);
    END LOOP;
END;
$$ LANGUAGE plpgsql;
"""

# One advisory lock for the whole chain: 0x41545445, "ATTE" (assistant.audit._CHAIN_LOCK_KEY).
APPEND = r"""
CREATE OR REPLACE FUNCTION attest_audit_append(
    p_created_at timestamptz,
    p_event_type text,
    p_actor_id bigint,
    p_actor_username text,
    p_ip_address inet,
    p_user_agent text,
    p_collection_id bigint,
    p_flagged boolean,
    p_summary text,
    p_search_text text,
    p_payload jsonb,
    p_payload_hash text,
    OUT new_id bigint,
    OUT new_seq bigint,
    OUT new_prev_hash text,
    OUT new_entry_hash text
) AS $$
DECLARE
    last_payload_hash text;
BEGIN
    IF p_payload_hash IS NULL OR p_payload_hash !~ '^[0-9a-f]{64}$' THEN
        RAISE EXCEPTION 'payload hash must be 64 lowercase hex digits, not %', p_payload_hash;
    END IF;
    -- Held until the caller's transaction ends, so concurrent writers cannot fork the chain.
    PERFORM pg_advisory_xact_lock(1096045637);
    SELECT e.seq, e.payload_hash, e.entry_hash
      INTO new_seq, last_payload_hash, new_prev_hash
      FROM assistant_auditevent AS e ORDER BY e.seq DESC LIMIT 1;
    IF NOT FOUND THEN
        new_seq := 0;
        new_prev_hash := repeat('0', 64);
    ELSE
        new_seq := new_seq + 1;
    END IF;
    new_entry_hash := encode(
        sha256(decode(new_prev_hash, 'hex') || decode(p_payload_hash, 'hex')), 'hex');
    INSERT INTO assistant_auditevent (
        created_at, event_type, actor_id, actor_username, ip_address, user_agent,
        collection_id, flagged, summary, search_text, payload, seq, payload_hash, prev_hash,
        entry_hash, redacted
    ) VALUES (
        p_created_at, p_event_type, p_actor_id, p_actor_username, p_ip_address, p_user_agent,
        p_collection_id, p_flagged, p_summary, p_search_text, p_payload, new_seq,
        p_payload_hash, new_prev_hash, new_entry_hash, false
    ) RETURNING id INTO new_id;
    PERFORM attest_audit_tree_append(new_seq, p_payload_hash, last_payload_hash);
END;
$$ LANGUAGE plpgsql;
"""

DROP = """
DROP FUNCTION IF EXISTS attest_audit_append(
    timestamptz, text, bigint, text, inet, text, bigint, boolean, text, text, jsonb, text);
DROP FUNCTION IF EXISTS attest_audit_tree_append(bigint, text, text);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("assistant", "0009_merge_0007_audit_receipts_0008_view_identifiers"),
    ]

    operations = [migrations.RunSQL(TREE_APPEND + APPEND, DROP)]

"""Issue 9: append several entries in one statement (group commit of appends made on their own).

`attest_audit_append_batch` takes the arguments of `attest_audit_append` for several entries
(a JSON array, one object per entry) and appends the entries in array order, each exactly as
`attest_audit_append` would (same checks, chaining, insert, vector and tree nodes), taking the
chain's lock and reading the last entry once for the batch, in the one transaction the
statement runs in. assistant.audit's batcher uses it for entries recorded outside any
transaction by concurrent threads of one process: one round trip, one lock acquisition and one
commit (with its WAL flush) for the whole batch, where each entry used to pay all three.
Each caller still returns only once its entry is committed.
"""

from django.db import migrations

# The entries come as one JSON array of objects (what psycopg sends fastest: one text
# parameter, where arrays of twelve columns cost milliseconds of Python to adapt); `payload` is
# the payload's canonical text as a JSON string, so `->>`-style extraction gives it back
# exactly.
APPEND_BATCH = r"""
CREATE FUNCTION attest_audit_append_batch(p_entries json)
RETURNS TABLE (new_id bigint, new_seq bigint, new_prev_hash text, new_entry_hash text) AS $$
DECLARE
    e record;
    last_seq bigint;
    last_payload_hash text;
BEGIN
    -- As attest_audit_append, once for the whole batch: the lock (held until the caller's
    -- transaction ends), then the last entry.
    PERFORM pg_advisory_xact_lock(1096045637);
    SELECT x.seq, x.payload_hash, x.entry_hash
      INTO last_seq, last_payload_hash, new_entry_hash
      FROM assistant_auditevent AS x ORDER BY x.seq DESC LIMIT 1;
    IF NOT FOUND THEN
        last_seq := -1;
        new_entry_hash := repeat('0', 64);
    END IF;
    FOR e IN
        SELECT x.*
          FROM ROWS FROM (json_to_recordset(p_entries) AS (
                   created_at timestamptz, event_type text, actor_id bigint,
                   actor_username text, ip_address inet, user_agent text, collection_id bigint,
                   flagged boolean, summary text, search_text text, payload text,
                   payload_hash text)) WITH ORDINALITY AS x
         ORDER BY x.ordinality
    LOOP
        -- Each entry exactly as attest_audit_append would append it after the one before.
        IF e.payload_hash IS NULL OR e.payload_hash !~ '^[0-9a-f]{64}$' THEN
            RAISE EXCEPTION 'payload hash must be 64 lowercase hex digits, not %',
                e.payload_hash;
        END IF;
        new_seq := last_seq + 1;
        new_prev_hash := new_entry_hash;
        new_entry_hash := encode(
            sha256(decode(new_prev_hash, 'hex') || decode(e.payload_hash, 'hex')), 'hex');
        INSERT INTO assistant_auditevent (
            created_at, event_type, actor_id, actor_username, ip_address, user_agent,
            collection_id, flagged, summary, search_text, search_vector, payload, seq,
            payload_hash, prev_hash, entry_hash, redacted
        ) VALUES (
            e.created_at, e.event_type, e.actor_id, e.actor_username, e.ip_address,
            e.user_agent, e.collection_id, e.flagged, e.summary, e.search_text,
            to_tsvector('english'::regconfig, coalesce(e.search_text, '')), e.payload::json,
            new_seq, e.payload_hash, new_prev_hash, new_entry_hash, false
        ) RETURNING id INTO new_id;
        PERFORM attest_audit_tree_append(new_seq, e.payload_hash, last_payload_hash);
        RETURN NEXT;
        last_seq := new_seq;
        last_payload_hash := e.payload_hash;
    END LOOP;
END;
$$ LANGUAGE plpgsql;
"""

DROP_APPEND_BATCH = "DROP FUNCTION attest_audit_append_batch(json);"


class Migration(migrations.Migration):
    dependencies = [
        ("assistant", "0012_audit_payload_json"),
    ]

    operations = [migrations.RunSQL(APPEND_BATCH, DROP_APPEND_BATCH)]

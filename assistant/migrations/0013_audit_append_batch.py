"""Issue 9: append several entries in one statement (group commit of appends made on their own).

`attest_audit_append_batch` takes the arguments of `attest_audit_append` for several entries
(a JSON array, one object per entry) and appends the entries in array order, each exactly as
`attest_audit_append` does (same lock, chaining, insert and tree nodes), in the one transaction
the statement runs in. assistant.audit's batcher uses it for entries recorded outside any
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
BEGIN
    FOR e IN
        SELECT x.*
          FROM ROWS FROM (json_to_recordset(p_entries) AS (
                   created_at timestamptz, event_type text, actor_id bigint,
                   actor_username text, ip_address inet, user_agent text, collection_id bigint,
                   flagged boolean, summary text, search_text text, payload text,
                   payload_hash text)) WITH ORDINALITY AS x
         ORDER BY x.ordinality
    LOOP
        RETURN QUERY SELECT * FROM attest_audit_append(
            e.created_at, e.event_type, e.actor_id, e.actor_username, e.ip_address,
            e.user_agent, e.collection_id, e.flagged, e.summary, e.search_text,
            e.payload::json, e.payload_hash);
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

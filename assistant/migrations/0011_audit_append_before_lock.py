"""Issue 9: shorten what `attest_audit_append` does while it holds the chain's lock.

Appends are serialised by the chain's advisory lock, held until the appending transaction
commits, so appends/s is bounded by what happens between taking that lock and the commit.
Measured on the project's 2-core machine (docs/audit.md, "Append throughput"), the largest part
of the insert was computing the generated `search_vector` (`to_tsvector('english', ...)` over
the search text: about 0.16 ms of server CPU for an answer-sized entry), which ran inside the
INSERT and so inside the lock. Here:

- `search_vector` becomes a plain column. `attest_audit_append` computes it from the search
  text before it takes the lock, as it already did the payload check; the leaf's bytes are also
  decoded before. A trigger fills it for any other insert that leaves it NULL (the ORM, COPY),
  and recomputes it whenever an update changes `search_text` or the vector itself (erasure
  empties the search text), so it always matches `search_text`.
- Five indexes that no query needs are dropped, each one more index entry written under the
  lock: the single-column indexes on `actor_id`, `collection_id` and `event_type` (each is the
  prefix of the (column, id DESC) index the workspace filters and pages with), `event_type`'s
  and `entry_hash`'s `varchar_pattern_ops` indexes (nothing searches them with LIKE).
  `entry_hash` stays unique, under the same constraint name.

What the function guarantees is unchanged: the entry is inserted in the caller's transaction,
already chained to the last entry read under the lock, with its tree nodes.
"""

import django.contrib.postgres.search
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


SEARCH_VECTOR_TRIGGER = r"""
CREATE OR REPLACE FUNCTION attest_audit_search_vector() RETURNS trigger AS $$
BEGIN
    NEW.search_vector := to_tsvector('english'::regconfig, coalesce(NEW.search_text, ''));
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER attest_audit_search_vector_insert
    BEFORE INSERT ON assistant_auditevent
    FOR EACH ROW WHEN (NEW.search_vector IS NULL)
    EXECUTE FUNCTION attest_audit_search_vector();

CREATE TRIGGER attest_audit_search_vector_update
    BEFORE UPDATE ON assistant_auditevent
    FOR EACH ROW WHEN (NEW.search_text IS DISTINCT FROM OLD.search_text
                       OR NEW.search_vector IS DISTINCT FROM OLD.search_vector)
    EXECUTE FUNCTION attest_audit_search_vector();
"""

DROP_SEARCH_VECTOR_TRIGGER = """
DROP TRIGGER IF EXISTS attest_audit_search_vector_update ON assistant_auditevent;
DROP TRIGGER IF EXISTS attest_audit_search_vector_insert ON assistant_auditevent;
DROP FUNCTION IF EXISTS attest_audit_search_vector();
"""

# One advisory lock for the whole chain: 0x41545445, "ATTE" (assistant.audit._CHAIN_LOCK_KEY).
# Same signature and results as migration 0010's version.
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
    payload_hash_bytes bytea;
    search_vector tsvector;
BEGIN
    -- Everything that does not depend on the entry before, before the lock.
    IF p_payload_hash IS NULL OR p_payload_hash !~ '^[0-9a-f]{64}$' THEN
        RAISE EXCEPTION 'payload hash must be 64 lowercase hex digits, not %', p_payload_hash;
    END IF;
    payload_hash_bytes := decode(p_payload_hash, 'hex');
    search_vector := to_tsvector('english'::regconfig, coalesce(p_search_text, ''));
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
    new_entry_hash := encode(sha256(decode(new_prev_hash, 'hex') || payload_hash_bytes), 'hex');
    INSERT INTO assistant_auditevent (
        created_at, event_type, actor_id, actor_username, ip_address, user_agent,
        collection_id, flagged, summary, search_text, search_vector, payload, seq,
        payload_hash, prev_hash, entry_hash, redacted
    ) VALUES (
        p_created_at, p_event_type, p_actor_id, p_actor_username, p_ip_address, p_user_agent,
        p_collection_id, p_flagged, p_summary, p_search_text, search_vector, p_payload,
        new_seq, p_payload_hash, new_prev_hash, new_entry_hash, false
    ) RETURNING id INTO new_id;
    PERFORM attest_audit_tree_append(new_seq, p_payload_hash, last_payload_hash);
END;
$$ LANGUAGE plpgsql;
"""

# search_vector as migration 0002 created it: generated from search_text, with its GIN index.
GENERATED_SEARCH_VECTOR = """
DROP INDEX IF EXISTS audit_search_gin;
ALTER TABLE assistant_auditevent DROP COLUMN search_vector;
ALTER TABLE assistant_auditevent ADD COLUMN search_vector tsvector
    GENERATED ALWAYS AS (to_tsvector('english'::regconfig, COALESCE(search_text, ''))) STORED;
CREATE INDEX audit_search_gin ON assistant_auditevent USING gin (search_vector);
"""

ENTRY_HASH_LIKE = "assistant_auditevent_entry_hash_6ea4d805_like"


def _previous_append() -> str:
    from importlib import import_module

    return import_module("assistant.migrations.0010_audit_append_function").APPEND


class Migration(migrations.Migration):
    dependencies = [
        ("assistant", "0010_audit_append_function"),
        ("ingest", "0008_merge_0004_patients_0007_merge_20261124_1513"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="auditevent",
            name="actor",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="collection",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="ingest.collection",
            ),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="event_type",
            field=models.CharField(max_length=50),
        ),
        # entry_hash keeps its unique constraint (same name, no index rebuild); only the LIKE
        # index that unique=True brought goes.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="auditevent",
                    name="entry_hash",
                    field=models.CharField(max_length=64),
                ),
                migrations.AddConstraint(
                    model_name="auditevent",
                    constraint=models.UniqueConstraint(
                        fields=("entry_hash",), name="assistant_auditevent_entry_hash_key"
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX IF EXISTS {ENTRY_HASH_LIKE}",
                    f"CREATE INDEX {ENTRY_HASH_LIKE} "
                    "ON assistant_auditevent (entry_hash varchar_pattern_ops)",
                ),
            ],
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="auditevent",
                    name="search_vector",
                    field=django.contrib.postgres.search.SearchVectorField(
                        editable=False, null=True
                    ),
                ),
            ],
            database_operations=[
                # Keeps every stored vector; no table rewrite.
                migrations.RunSQL(
                    "ALTER TABLE assistant_auditevent ALTER COLUMN search_vector DROP EXPRESSION",
                    GENERATED_SEARCH_VECTOR,
                ),
            ],
        ),
        migrations.RunSQL(SEARCH_VECTOR_TRIGGER, DROP_SEARCH_VECTOR_TRIGGER),
        migrations.RunSQL(APPEND, _previous_append()),
    ]

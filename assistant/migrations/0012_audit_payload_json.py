"""Issue 9: store each audit payload as the exact canonical bytes its hash was taken over.

`payload` becomes `json`, which keeps its input text verbatim, instead of `jsonb`, which
re-prints it in its own format. `audit_record` already computes the canonical text (orjson,
sorted keys, compact); stored as it is, `audit verify` hashes it spliced between the other
fields without parsing it (assistant/audit_canonical.py), and falls back to parsing only for
text that is not canonical.

- `attest_audit_append` takes the payload as `json` (a new signature: dropped and created).
  Nothing else on the table compares the payload: the append-only trigger checks every other
  column, and the search-vector triggers read only the search text.
- Existing entries get, in the same type change, the canonical text of their value instead of
  jsonb's text (`{"a": 1, "bb": 2}`, keys by length), so old trails get the fast path too: the
  trail is read once, the canonical texts are computed in Python (orjson, as audit_record
  does), and the one table rewrite that ALTER ... TYPE does anyway takes them; no UPDATE, so no
  dead rows, and the append-only trigger (row triggers do not fire) stays on. The value, and
  so every hash, is unchanged. Tombstones keep jsonb's text (verify does not hash them), and so
  does text orjson cannot read (integers beyond 64 bits): verify's fallback handles it.
- An index on `((payload -> 'answer_id')::jsonb)`, the SQL `payload__answer_id=` compiles to
  (assistant/fields.py), so finding an answer's entry stops scanning the trail.
"""

import orjson
from django.db import migrations, models

import audit.fields

BATCH = 10_000

# One advisory lock for the whole chain: 0x41545445, "ATTE" (assistant.audit._CHAIN_LOCK_KEY).
# As migration 0011's, but the payload is `json`: its text is inserted as it is given.
APPEND = r"""
CREATE FUNCTION attest_audit_append(
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
    p_payload json,
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

DROP_JSONB_APPEND = """
DROP FUNCTION attest_audit_append(
    timestamptz, text, bigint, text, inet, text, bigint, boolean, text, text, jsonb, text);
"""

DROP_JSON_APPEND = """
DROP FUNCTION attest_audit_append(
    timestamptz, text, bigint, text, inet, text, bigint, boolean, text, text, json, text);
"""

# The type change rewrites the table once, each entry's text taken from the canonical texts
# computed beforehand (a function, since ALTER ... USING cannot hold a subquery).
CONVERT = """
CREATE FUNCTION pg_temp.attest_canonical_payload_of(bigint) RETURNS json
    LANGUAGE sql STABLE AS 'SELECT payload::json FROM attest_canonical_payload WHERE id = $1';
ALTER TABLE assistant_auditevent ALTER COLUMN payload TYPE json
    USING coalesce(pg_temp.attest_canonical_payload_of(id), payload::json);
DROP FUNCTION pg_temp.attest_canonical_payload_of(bigint);
DROP TABLE attest_canonical_payload;
"""

BACK_TO_JSONB = "ALTER TABLE assistant_auditevent ALTER COLUMN payload TYPE jsonb USING payload::jsonb"


def _previous_append() -> str:
    from importlib import import_module

    return import_module("assistant.migrations.0011_audit_append_before_lock").APPEND


def _canonical_text(text: str) -> str | None:
    """The canonical text of the value `text` holds (as audit_canonical.canonical_json writes
    it), or None when it already is that or orjson cannot read it."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    canonical = orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode()
    return None if canonical == text else canonical


def convert_payloads(apps, schema_editor) -> None:
    """Make `payload` json, each entry's text the canonical text of its value (tombstones and
    text orjson cannot read keep jsonb's text), in one pass over the trail and one rewrite of
    the table, which keeps its id order."""
    connection = schema_editor.connection
    connection.ensure_connection()
    raw = connection.connection
    with raw.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE attest_canonical_payload (id bigint PRIMARY KEY, payload text)"
        )
    with raw.cursor(name="attest_audit_payloads") as source:
        source.execute(
            "SELECT id, payload::text FROM assistant_auditevent WHERE NOT redacted ORDER BY id"
        )
        while rows := source.fetchmany(BATCH):
            changed = [(i, c) for i, text in rows if (c := _canonical_text(text)) is not None]
            if not changed:
                continue
            with (
                raw.cursor() as cursor,
                cursor.copy("COPY attest_canonical_payload (id, payload) FROM STDIN") as copy,
            ):
                for row in changed:
                    copy.write_row(row)
    with raw.cursor() as cursor:
        cursor.execute("ANALYZE attest_canonical_payload")
        cursor.execute(CONVERT)


class Migration(migrations.Migration):
    dependencies = [
        ("assistant", "0011_audit_append_before_lock"),
    ]

    operations = [
        migrations.RunSQL(DROP_JSONB_APPEND, _previous_append()),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="auditevent",
                    name="payload",
                    field=audit.fields.JSONTextField(),
                ),
            ],
            database_operations=[
                migrations.RunPython(convert_payloads, migrations.RunPython.noop),
                migrations.RunSQL(migrations.RunSQL.noop, BACK_TO_JSONB),
            ],
        ),
        migrations.RunSQL(APPEND, DROP_JSON_APPEND),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(
                audit.fields.JSONKeyTransform("answer_id", "payload"),
                name="audit_answer_id_idx",
            ),
        ),
    ]

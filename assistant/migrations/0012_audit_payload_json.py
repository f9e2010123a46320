"""Issue 9: store each audit payload as the exact canonical bytes its hash was taken over.

`payload` becomes `json`, which keeps its input text verbatim, instead of `jsonb`, which
re-prints it in its own format. `audit_record` already computes the canonical text (orjson,
sorted keys, compact); stored as it is, `audit verify` hashes it spliced between the other
fields without parsing it (assistant/audit_canonical.py), and falls back to parsing only for
text that is not canonical.

- `attest_audit_append` takes the payload as `json` (a new signature: dropped and created).
  Nothing else on the table compares the payload: the append-only trigger checks every other
  column, and the search-vector triggers read only the search text.
- Existing entries' text (jsonb's format after the type change: `{"a": 1, "bb": 2}`, keys by
  length) is rewritten here into the canonical text of the same value, so old trails get the
  fast path too. The value, and so every hash, is unchanged; the append-only trigger is
  disabled for that one UPDATE, as migration 0007 did to number the entries. Tombstones are
  left as they are (verify does not hash them), and so is text orjson cannot read (integers
  beyond 64 bits): the fallback handles it as before.
- An index on `((payload -> 'answer_id')::jsonb)`, the SQL `payload__answer_id=` compiles to
  (assistant/fields.py), so finding an answer's entry stops scanning the trail.
"""

import orjson
from django.db import migrations, models

import assistant.fields

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

REWRITE = """
ALTER TABLE assistant_auditevent DISABLE TRIGGER attest_audit_append_only;
UPDATE assistant_auditevent AS e SET payload = c.payload::json
  FROM attest_canonical_payload AS c
 WHERE e.id = c.id;
ALTER TABLE assistant_auditevent ENABLE TRIGGER attest_audit_append_only;
DROP TABLE attest_canonical_payload;
"""


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


def rewrite_canonical(apps, schema_editor) -> None:
    """Rewrite every entry's payload text that is not canonical, streaming the trail once."""
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
        cursor.execute(REWRITE)


class Migration(migrations.Migration):
    dependencies = [
        ("assistant", "0011_audit_append_before_lock"),
    ]

    operations = [
        migrations.RunSQL(DROP_JSONB_APPEND, _previous_append()),
        migrations.AlterField(
            model_name="auditevent",
            name="payload",
            field=assistant.fields.JSONTextField(),
        ),
        migrations.RunSQL(APPEND, DROP_JSON_APPEND),
        migrations.RunPython(rewrite_canonical, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(
                assistant.fields.JSONKeyTransform("answer_id", "payload"),
                name="audit_answer_id_idx",
            ),
        ),
    ]

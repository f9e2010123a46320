"""Erasure finds a document's audit entries through an index instead of reading the trail.

`audit_redact_document` looks for every entry whose payload names the document (top-level
`document_id`) or quotes it (an element of `passages` with that `document_id`). It used to
test `payload::jsonb @> ...` on every entry: 4.9 s over a 1M-entry trail (every payload parsed),
growing with the trail, inside the erasing admin's request.

`attest_audit_document_refs(payload)` returns the document ids a payload holds in those two
places, as numbers, exactly where the containment tests would match them (a JSON number under
`document_id` of the top-level object, or of an object element of a top-level `passages`
array; numerically equal values such as 7 and 7.0 compare equal as `numeric`, as they do in
jsonb). A GIN index over it lets erasure read only the candidate entries; the query keeps the
containment tests as the final word, so the index can only narrow the search, never change its
result. `fastupdate = off`: each append updates the index at once (a few keys per entry)
rather than queueing into a pending list that some later append, holding the chain's lock,
would have to flush.

Built CONCURRENTLY (this migration is not atomic) so that appends go on while an existing
trail is indexed (about 5 s per million entries on the build machine); an invalid index left by
a failed earlier build is dropped first, so running the migration again builds it.
"""

from django.db import migrations

DOCUMENT_REFS = r"""
CREATE OR REPLACE FUNCTION attest_audit_document_refs(p_payload json)
RETURNS numeric[] AS $$
DECLARE
    j jsonb := p_payload::jsonb;
    refs numeric[] := '{}';
    e jsonb;
BEGIN
    IF jsonb_typeof(j -> 'document_id') = 'number' THEN
        refs := refs || (j ->> 'document_id')::numeric;
    END IF;
    IF jsonb_typeof(j -> 'passages') = 'array' THEN
        FOR e IN SELECT jsonb_array_elements(j -> 'passages') LOOP
            IF jsonb_typeof(e -> 'document_id') = 'number' THEN
                refs := refs || (e ->> 'document_id')::numeric;
            END IF;
        END LOOP;
    END IF;
    RETURN refs;
END;
$$ LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE;
"""

DROP_DOCUMENT_REFS = "DROP FUNCTION IF EXISTS attest_audit_document_refs(json);"

INDEX = (
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_document_refs_gin ON assistant_auditevent "
    "USING gin (attest_audit_document_refs(payload)) WITH (fastupdate = off);"
)

DROP_INDEX = "DROP INDEX CONCURRENTLY IF EXISTS audit_document_refs_gin;"


def drop_invalid_index(apps, schema_editor) -> None:
    """A concurrent build that failed (a deadlock, a cancelled upgrade) leaves an invalid index
    behind, which IF NOT EXISTS would then keep for good: drop it so the build runs again."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid "
            "WHERE c.relname = 'audit_document_refs_gin'"
        )
        row = cursor.fetchone()
        if row is not None and not row[0]:
            cursor.execute(DROP_INDEX)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("assistant", "0013_audit_append_batch"),
    ]

    operations = [
        migrations.RunSQL(DOCUMENT_REFS, DROP_DOCUMENT_REFS),
        migrations.RunPython(drop_invalid_index, migrations.RunPython.noop),
        migrations.RunSQL(INDEX, DROP_INDEX),
    ]

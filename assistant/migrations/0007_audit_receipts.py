"""Issue 9: every audit entry gets a leaf index (`seq`), the Merkle tree's complete subtrees are
stored (and append-only), checkpoints are indexed, and an answer points at its audit entry.

Existing trails are numbered in id order and their tree is built once here."""

import hashlib

import django.db.models.deletion
from django.db import migrations, models

NUMBER_EXISTING = """
ALTER TABLE assistant_auditevent DISABLE TRIGGER attest_audit_append_only;
UPDATE assistant_auditevent AS e SET seq = n.rn - 1
  FROM (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM assistant_auditevent) AS n
 WHERE e.id = n.id;
ALTER TABLE assistant_auditevent ENABLE TRIGGER attest_audit_append_only;
"""

# The redaction exception must also keep the leaf index.
ENTRY_FUNCTION = """
CREATE OR REPLACE FUNCTION attest_audit_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND current_setting('attest.audit_redaction', true) = 'on'
       AND NEW.redacted AND NOT OLD.redacted
       AND NEW.id = OLD.id
       AND NEW.seq = OLD.seq
       AND NEW.payload_hash = OLD.payload_hash
       AND NEW.prev_hash = OLD.prev_hash
       AND NEW.entry_hash = OLD.entry_hash
       AND NEW.created_at = OLD.created_at
       AND NEW.event_type = OLD.event_type
       AND NEW.actor_id IS NOT DISTINCT FROM OLD.actor_id
       AND NEW.actor_username = OLD.actor_username
       AND NEW.collection_id IS NOT DISTINCT FROM OLD.collection_id
       AND NEW.flagged = OLD.flagged THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the audit trail is append-only: % of entry % rejected', TG_OP, OLD.id
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""

TREE_TRIGGER = """
CREATE OR REPLACE FUNCTION attest_audit_tree_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit tree is append-only: % of node %/% rejected',
        TG_OP, OLD.level, OLD.index USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER attest_audit_tree_append_only
    BEFORE UPDATE OR DELETE ON assistant_audittreenode
    FOR EACH ROW EXECUTE FUNCTION attest_audit_tree_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS attest_audit_tree_append_only ON assistant_audittreenode;
DROP FUNCTION IF EXISTS attest_audit_tree_append_only();
"""
APPEND_ONLY = ENTRY_FUNCTION + TREE_TRIGGER
# Going back: the entry trigger of 0003 again (it must not name the removed seq column).
UNDO = DROP + ENTRY_FUNCTION.replace("       AND NEW.seq = OLD.seq\n", "")


def build_tree(apps, schema_editor):
    """Store every complete subtree of the existing entries (leaves in seq order)."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        cursor.execute("SELECT payload_hash FROM assistant_auditevent ORDER BY seq")
        stack: list[bytes] = []
        rows: list[tuple[int, int, bytes]] = []
        n = 0
        for (payload_hash,) in cursor.fetchall():
            h = hashlib.sha256(b"\x00" + bytes.fromhex(payload_hash)).digest()
            level, i = 0, n
            while i & 1:
                h = hashlib.sha256(b"\x01" + stack.pop() + h).digest()
                level += 1
                i >>= 1
                rows.append((level, i, h))
            stack.append(h)
            n += 1
        for start in range(0, len(rows), 5000):
            cursor.executemany(
                "INSERT INTO assistant_audittreenode (level, index, hash) VALUES (%s, %s, %s)",
                rows[start : start + 5000],
            )


class Migration(migrations.Migration):
    dependencies = [
        ("assistant", "0006_removed_citations"),
    ]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="seq",
            field=models.BigIntegerField(null=True),
        ),
        migrations.RunSQL(NUMBER_EXISTING, migrations.RunSQL.noop),
        migrations.AlterField(
            model_name="auditevent",
            name="seq",
            field=models.BigIntegerField(
                help_text="Position in the chain from 0: the entry's Merkle leaf index",
                unique=True,
            ),
        ),
        migrations.CreateModel(
            name="AuditTreeNode",
            fields=[
                ("pk", models.CompositePrimaryKey("level", "index", blank=True, editable=False, primary_key=True, serialize=False)),
                ("level", models.PositiveSmallIntegerField()),
                ("index", models.BigIntegerField()),
                ("hash", models.BinaryField(max_length=32)),
            ],
        ),
        migrations.CreateModel(
            name="AuditCheckpoint",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("tree_size", models.BigIntegerField(db_index=True)),
                ("root_hash", models.CharField(max_length=64)),
                ("timestamp", models.CharField(help_text="UTC, ISO 8601, as signed", max_length=40)),
                ("key_id", models.CharField(max_length=16)),
                ("signature", models.CharField(max_length=100)),
                ("file_name", models.CharField(max_length=200)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={"ordering": ["-tree_size", "-id"]},
        ),
        migrations.AddField(
            model_name="answer",
            name="audit_event",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                help_text="The audit entry that records this answer (its receipt's leaf)",
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="assistant.auditevent",
            ),
        ),
        migrations.RunSQL(APPEND_ONLY, UNDO),
        migrations.RunPython(build_tree, migrations.RunPython.noop),
    ]

"""The audit trail's models move here from the `assistant` app; the database does not change.

The four tables keep their names (`assistant_auditevent`, ...), which the SQL functions and
triggers of assistant's migrations 0002 to 0014 use, so this migration only tells Django's
state where the models now live (SeparateDatabaseAndState with no database operation), and
moves their content types, so that permissions granted on them (review_audit, view_auditevent)
stay granted, now as `audit.*`. assistant 0015 removes them from the assistant app's state.
"""

import audit.fields
import django.contrib.postgres.indexes
import django.contrib.postgres.search
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models




CONTENT_TYPES = ["auditevent", "chaincheck", "audittreenode", "auditcheckpoint"]


def _move_content_types(old: str, new: str):
    def move(apps, schema_editor):
        content_type = apps.get_model("contenttypes", "ContentType")
        db = schema_editor.connection.alias
        for model in CONTENT_TYPES:
            if content_type.objects.using(db).filter(app_label=new, model=model).exists():
                continue
            content_type.objects.using(db).filter(app_label=old, model=model).update(
                app_label=new
            )

    return move


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("assistant", "0014_audit_document_refs_index"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("ingest", "0009_chunk_indexes_for_scale"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='AuditCheckpoint',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('tree_size', models.BigIntegerField(db_index=True)),
                        ('root_hash', models.CharField(max_length=64)),
                        ('timestamp', models.CharField(help_text='UTC, ISO 8601, as signed', max_length=40)),
                        ('key_id', models.CharField(max_length=16)),
                        ('signature', models.CharField(max_length=100)),
                        ('file_name', models.CharField(max_length=200)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                    ],
                    options={
                        'db_table': 'assistant_auditcheckpoint',
                        'ordering': ['-tree_size', '-id'],
                    },
                ),
                migrations.CreateModel(
                    name='AuditTreeNode',
                    fields=[
                        ('pk', models.CompositePrimaryKey('level', 'index', blank=True, editable=False, primary_key=True, serialize=False)),
                        ('level', models.PositiveSmallIntegerField()),
                        ('index', models.BigIntegerField()),
                        ('hash', models.BinaryField(max_length=32)),
                    ],
                    options={
                        'db_table': 'assistant_audittreenode',
                    },
                ),
                migrations.CreateModel(
                    name='ChainCheck',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('checked_at', models.DateTimeField()),
                        ('entries', models.PositiveBigIntegerField()),
                        ('redacted', models.PositiveBigIntegerField(default=0)),
                        ('ok', models.BooleanField()),
                        ('first_broken_id', models.BigIntegerField(null=True)),
                        ('reason', models.CharField(blank=True, max_length=200)),
                        ('seconds', models.FloatField(default=0)),
                    ],
                    options={
                        'db_table': 'assistant_chaincheck',
                        'ordering': ['-checked_at'],
                        'get_latest_by': 'checked_at',
                    },
                ),
                migrations.CreateModel(
                    name='AuditEvent',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('created_at', models.DateTimeField(db_index=True)),
                        ('event_type', models.CharField(max_length=50)),
                        ('actor_username', models.CharField(blank=True, max_length=150)),
                        ('ip_address', models.GenericIPAddressField(blank=True, null=True)),
                        ('user_agent', models.CharField(blank=True, max_length=500)),
                        ('flagged', models.BooleanField(default=False, help_text='Refused or unsupported answer')),
                        ('summary', models.CharField(blank=True, max_length=300)),
                        ('search_text', models.TextField(blank=True, help_text='Words searchable in the workspace')),
                        ('search_vector', django.contrib.postgres.search.SearchVectorField(editable=False, null=True)),
                        ('payload', audit.fields.JSONTextField()),
                        ('seq', models.BigIntegerField(help_text="Position in the chain from 0: the entry's Merkle leaf index", unique=True)),
                        ('payload_hash', models.CharField(max_length=64)),
                        ('prev_hash', models.CharField(max_length=64)),
                        ('entry_hash', models.CharField(max_length=64)),
                        ('redacted', models.BooleanField(default=False)),
                        ('redacted_at', models.DateTimeField(blank=True, null=True)),
                        ('actor', models.ForeignKey(db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('collection', models.ForeignKey(db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='ingest.collection')),
                    ],
                    options={
                        'db_table': 'assistant_auditevent',
                        'ordering': ['-id'],
                        'permissions': [('review_audit', 'Can review and export the audit trail')],
                        'indexes': [models.Index(fields=['actor', '-id'], name='audit_actor_idx'), models.Index(fields=['collection', '-id'], name='audit_collection_idx'), models.Index(fields=['event_type', '-id'], name='audit_type_idx'), models.Index(condition=models.Q(('flagged', True)), fields=['-id'], name='audit_flagged_idx'), django.contrib.postgres.indexes.GinIndex(fields=['search_vector'], name='audit_search_gin'), models.Index(audit.fields.JSONKeyTransform('answer_id', 'payload'), name='audit_answer_id_idx')],
                        'constraints': [models.UniqueConstraint(fields=('entry_hash',), name='assistant_auditevent_entry_hash_key')],
                    },
                ),
            ],
        ),
        migrations.RunPython(
            _move_content_types("assistant", "audit"),
            _move_content_types("audit", "assistant"),
        ),
    ]

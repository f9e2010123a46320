"""The audit trail's models now live in the `audit` app (audit 0001): removed from this app's
state only. Their tables, functions and triggers stay as they are."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("assistant", "0014_audit_document_refs_index"),
        ("audit", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.AlterField(
                    model_name="answer",
                    name="audit_event",
                    field=models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        help_text="The audit entry that records this answer (its receipt's leaf)",
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="audit.auditevent",
                    ),
                ),
                migrations.DeleteModel(name="AuditCheckpoint"),
                migrations.DeleteModel(name="AuditTreeNode"),
                migrations.DeleteModel(name="ChainCheck"),
                migrations.DeleteModel(name="AuditEvent"),
            ],
        ),
    ]

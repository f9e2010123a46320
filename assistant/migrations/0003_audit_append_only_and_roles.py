"""The audit table is append-only (trigger) and the three roles exist as groups."""

from django.db import migrations

APPEND_ONLY = """
CREATE OR REPLACE FUNCTION attest_audit_append_only() RETURNS trigger AS $$
BEGIN
    -- The one sanctioned change: erasure replaces the payload with a tombstone inside a
    -- transaction that set attest.audit_redaction, and every hash and header stays the same.
    IF TG_OP = 'UPDATE'
       AND current_setting('attest.audit_redaction', true) = 'on'
       AND NEW.redacted AND NOT OLD.redacted
       AND NEW.id = OLD.id
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

CREATE TRIGGER attest_audit_append_only
    BEFORE UPDATE OR DELETE ON assistant_auditevent
    FOR EACH ROW EXECUTE FUNCTION attest_audit_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS attest_audit_append_only ON assistant_auditevent;
DROP FUNCTION IF EXISTS attest_audit_append_only();
"""

ROLES = {
    "admin": [
        ("ingest", "collection", ["add", "change", "delete", "view"]),
        ("ingest", "document", ["add", "change", "delete", "view"]),
        ("ingest", "collectiongrant", ["add", "change", "delete", "view"]),
    ],
    "user": [],
    "compliance": [("assistant", "auditevent", ["view", "review_audit"])],
}


def create_roles(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, grants in ROLES.items():
        group, _ = Group.objects.get_or_create(name=role)
        for app_label, model, actions in grants:
            for action in actions:
                codename = action if action == "review_audit" else f"{action}_{model}"
                group.permissions.add(
                    Permission.objects.get(content_type__app_label=app_label, codename=codename)
                )


class Migration(migrations.Migration):
    dependencies = [
        ("assistant", "0002_audit_trail"),
        ("ingest", "0002_collection_legal_hold_collectiongrant"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunSQL(APPEND_ONLY, DROP),
        migrations.RunPython(create_roles, migrations.RunPython.noop),
    ]

"""The append-only trigger's one exception, narrowed and repeatable (issue 19).

- Erasing a document now removes only its passages' text from the entries that quote it, so an
  answer quoting two documents is changed once per erased document. The exception (assistant
  0003, 0007) allowed a change only from not-redacted to redacted; it now allows it on any entry
  that stays redacted.
- The exception let a redaction change the entry's IP address and user agent, which erasure
  never touches: a forged user agent passed. They must now stay as they were, like every hash,
  the leaf index and the rest of the header.
"""

from django.db import migrations

CONDITIONS = """
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
       AND NEW.flagged = OLD.flagged
       AND NEW.ip_address IS NOT DISTINCT FROM OLD.ip_address
       AND NEW.user_agent = OLD.user_agent THEN"""


OLD_CONDITIONS = CONDITIONS.replace(
    """
       AND NEW.ip_address IS NOT DISTINCT FROM OLD.ip_address
       AND NEW.user_agent = OLD.user_agent THEN""",
    " THEN",
)

def _function(redacted_test: str, conditions: str = CONDITIONS) -> str:
    return f"""
CREATE OR REPLACE FUNCTION attest_audit_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND current_setting('attest.audit_redaction', true) = 'on'
       AND {redacted_test}{conditions}
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the audit trail is append-only: % of entry % rejected', TG_OP, OLD.id
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [
        migrations.RunSQL(
            _function("NEW.redacted"),
            reverse_sql=_function("NEW.redacted AND NOT OLD.redacted", OLD_CONDITIONS),
        ),
    ]

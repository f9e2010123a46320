"""Row-level security on documents and chunks, keyed to the collections a web request may read.

Creates the non-superuser role `attest_app`, which web requests switch to with SET ROLE (see
ingest/row_security.py); gives it the table privileges of the application; enables RLS on
ingest_document and ingest_chunk with a policy for that role only. The owner (migrations,
Celery workers, management commands) is not subject to RLS (it is not FORCEd).

When the migrating user can neither create the role nor find it already granted to itself
(a managed PostgreSQL where the application user lacks CREATEROLE), the step is skipped with a
notice and Attest runs without this second layer (DB_ROW_SECURITY=auto); see docs/security.md.
"""

from django.db import DatabaseError, migrations, transaction

ROLE = "attest_app"
ALLOWED = """(
    current_setting('attest.rls_bypass', true) = 'on'
    OR collection_id = ANY (
        string_to_array(NULLIF(current_setting('attest.readable_collections', true), ''), ',')
        ::bigint[]
    )
)"""


def forwards(apps, schema_editor):
    with schema_editor.connection.cursor() as c:
        # pg_stats hides the statistics of a table under active RLS; full-text search weighs
        # words by them (ingest/selectors.py), so it reads them through this owner's function.
        # It returns word frequencies only, never text of a chunk.
        c.execute(
            """
            CREATE OR REPLACE FUNCTION attest_chunk_term_stats(schema_name text)
            RETURNS TABLE (elems text[], freqs real[])
            LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
                SELECT most_common_elems::text::text[], most_common_elem_freqs
                FROM pg_catalog.pg_stats
                WHERE schemaname = schema_name AND tablename = 'ingest_chunk'
                  AND attname = 'search_vector'
            $$
            """
        )
        c.execute(
            "SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user"
        )
        superuser, createrole = c.fetchone()
        c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [ROLE])
        exists = c.fetchone() is not None
        if not exists:
            if not (superuser or createrole):
                print(f"\n  row-level security skipped: cannot create role {ROLE}")
                return
            c.execute(f"CREATE ROLE {ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS")
        if not superuser:
            c.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", [ROLE])
            if not c.fetchone()[0]:
                try:
                    with transaction.atomic(using=schema_editor.connection.alias):
                        c.execute(f"GRANT {ROLE} TO current_user")
                except DatabaseError:
                    print(f"\n  row-level security skipped: cannot become {ROLE}")
                    return
        c.execute("SELECT current_schema()")
        schema = c.fetchone()[0]
        c.execute(f"GRANT USAGE ON SCHEMA {schema} TO {ROLE}")
        c.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {ROLE}")
        c.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {ROLE}")
        c.execute(
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} "
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {ROLE}"
        )
        c.execute(
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {ROLE}"
        )
        for table in ("ingest_document", "ingest_chunk"):
            c.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            c.execute(f"DROP POLICY IF EXISTS attest_readable ON {table}")
            c.execute(
                f"CREATE POLICY attest_readable ON {table} AS PERMISSIVE FOR ALL TO {ROLE} "
                f"USING {ALLOWED} WITH CHECK {ALLOWED}"
            )


def backwards(apps, schema_editor):
    with schema_editor.connection.cursor() as c:
        for table in ("ingest_document", "ingest_chunk"):
            c.execute(f"DROP POLICY IF EXISTS attest_readable ON {table}")
            c.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
        c.execute("DROP FUNCTION IF EXISTS attest_chunk_term_stats(text)")


class Migration(migrations.Migration):
    dependencies = [("ingest", "0003_download_permission")]

    operations = [migrations.RunPython(forwards, backwards)]

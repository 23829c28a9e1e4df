"""Make the ledger append-only in the database itself.

UPDATE and DELETE of postings, ledger transactions and audit events fail on
PostgreSQL and SQLite alike. On SQLite, Django's test flush empties tables
with DELETE; it can only do so while a row exists in
``ledger_maintenance`` (a table no application code writes; the test suite
uses it around flushes). PostgreSQL flushes with TRUNCATE, which row
triggers do not see, so it has no such table.
"""

from django.db import migrations

TABLES = ["payments_posting", "payments_ledgertransaction", "landlord_auditevent"]

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION submeter_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;
"""


def forwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_FUNCTION, params=None)
        for table in TABLES:
            schema_editor.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION submeter_append_only();"
            )
    elif vendor == "sqlite":
        schema_editor.execute("CREATE TABLE IF NOT EXISTS ledger_maintenance (reason TEXT)")
        for table in TABLES:
            for op in ("UPDATE", "DELETE"):
                schema_editor.execute(
                    f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
                    f"WHEN NOT EXISTS (SELECT 1 FROM ledger_maintenance) "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {op} refused'); END;"
                )


def backwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        for table in TABLES:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table};")
        schema_editor.execute("DROP FUNCTION IF EXISTS submeter_append_only();")
    elif vendor == "sqlite":
        for table in TABLES:
            for op in ("update", "delete"):
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_{op}")
        schema_editor.execute("DROP TABLE IF EXISTS ledger_maintenance")


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0001_initial"),
        ("landlord", "0001_initial"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]

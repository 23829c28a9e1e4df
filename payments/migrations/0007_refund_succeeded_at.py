from django.db import migrations, models
from django.db.models import F


def mark_succeeded(apps, schema_editor):
    Refund = apps.get_model("payments", "Refund")
    Refund.objects.filter(status="succeeded").update(succeeded_at=F("updated_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0006_connect_account_status_event_created"),
    ]

    operations = [
        migrations.AddField(
            model_name="refund",
            name="succeeded_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(mark_succeeded, migrations.RunPython.noop),
    ]

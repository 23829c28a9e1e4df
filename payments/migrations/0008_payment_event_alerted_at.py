from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0007_refund_succeeded_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="paymentevent",
            name="alerted_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Pickup",
            fields=[
                ("task_id", models.UUIDField(primary_key=True, serialize=False)),
                ("started", models.FloatField()),
            ],
            options={"db_table": "bench_pickups"},
        ),
    ]

"""The record of months the partitions job detached to archive tables, read by alliance operators in the admin."""

from django.db import migrations, models

from core.roles import grant_permissions, model_permissions


def grant(apps, schema_editor):
    grant_permissions(apps, {"Alliance operators": model_permissions("core.archivedmonth", ["view"])})


class Migration(migrations.Migration):

    dependencies = [
        ('core', '0021_partition_column_of_payments'),
        ('auth', '0012_alter_user_first_name_max_length'),
    ]

    operations = [
        migrations.CreateModel(
            name='ArchivedMonth',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('table', models.CharField(max_length=63, verbose_name='table')),
                ('month', models.DateField(help_text='The first day of the month, in Asia/Shanghai.', verbose_name='month')),
                ('archive_table', models.CharField(max_length=63, unique=True, verbose_name='archive table')),
                ('archived_at', models.DateTimeField(auto_now_add=True, verbose_name='archived')),
            ],
            options={
                'verbose_name': 'archived month',
                'verbose_name_plural': 'archived months',
                'ordering': ('table', 'month'),
                'constraints': [models.UniqueConstraint(fields=('table', 'month'), name='archivedmonth_table_month_unique')],
            },
        ),
        migrations.RunPython(grant, migrations.RunPython.noop),
    ]

"""Cardholders' names are personal data (PIPL): encrypt the existing ones, keep a masked form and a keyed hash for the
admin, and drop the plaintext column."""

from django.db import migrations, models

from core.crypto import decrypt, encrypt
from core.personal import mask_name, name_hash

CHUNK = 2000


def encrypt_names(apps, schema_editor):
    Cardholder = apps.get_model("members", "Cardholder")
    batch = []
    for holder in Cardholder.objects.only("pk", "display_name").order_by("pk").iterator(chunk_size=CHUNK):
        holder.name_encrypted = encrypt(holder.display_name)
        holder.name_hash = name_hash(holder.display_name)
        holder.name_masked = mask_name(holder.display_name)[:100]
        batch.append(holder)
        if len(batch) >= CHUNK:
            Cardholder.objects.bulk_update(batch, ["name_encrypted", "name_hash", "name_masked"])
            batch = []
    Cardholder.objects.bulk_update(batch, ["name_encrypted", "name_hash", "name_masked"])


def decrypt_names(apps, schema_editor):
    Cardholder = apps.get_model("members", "Cardholder")
    batch = []
    for holder in Cardholder.objects.only("pk", "name_encrypted").order_by("pk").iterator(chunk_size=CHUNK):
        holder.display_name = decrypt(holder.name_encrypted)[:100] if holder.name_encrypted else ""
        batch.append(holder)
        if len(batch) >= CHUNK:
            Cardholder.objects.bulk_update(batch, ["display_name"])
            batch = []
    Cardholder.objects.bulk_update(batch, ["display_name"])


class Migration(migrations.Migration):
    dependencies = [("members", "0004_operator_permissions_all_models")]

    operations = [
        migrations.AddField(
            model_name="cardholder",
            name="name_encrypted",
            field=models.TextField(default="", editable=False, verbose_name="name (encrypted)"),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="cardholder",
            name="name_hash",
            field=models.CharField(db_index=True, default="", editable=False, max_length=64, verbose_name="name hash"),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="cardholder",
            name="name_masked",
            field=models.CharField(default="", editable=False, max_length=100, verbose_name="name"),
            preserve_default=False,
        ),
        migrations.RunPython(encrypt_names, decrypt_names),
        # A default first, so that undoing the removal can add the column back to rows that have one.
        migrations.AlterField(
            model_name="cardholder",
            name="display_name",
            field=models.CharField(default="", max_length=100, verbose_name="display name"),
        ),
        migrations.RemoveField(model_name="cardholder", name="display_name"),
    ]

"""A merchant application's contact person (name, phone, email) is personal data (PIPL): encrypt the existing ones,
keep masked forms and keyed hashes for the admin, and drop the plaintext columns."""

from django.db import migrations, models

from core.crypto import decrypt, encrypt
from core.personal import email_hash, mask_email, mask_name, phone_digits, phone_hash

CHUNK = 2000
NEW = [
    "contact_name_encrypted",
    "contact_name_masked",
    "contact_phone_encrypted",
    "contact_phone_hash",
    "contact_phone_last4",
    "contact_email_encrypted",
    "contact_email_hash",
    "contact_email_masked",
]
OLD = ["contact_name", "contact_phone", "contact_email"]


def encrypt_contacts(apps, schema_editor):
    Application = apps.get_model("merchants", "MerchantApplication")
    batch = []
    for row in Application.objects.only("pk", *OLD).order_by("pk").iterator(chunk_size=CHUNK):
        row.contact_name_encrypted = encrypt(row.contact_name)
        row.contact_name_masked = mask_name(row.contact_name)[:100]
        row.contact_phone_encrypted = encrypt(row.contact_phone)
        row.contact_phone_hash = phone_hash(row.contact_phone)
        row.contact_phone_last4 = phone_digits(row.contact_phone)[-4:]
        row.contact_email_encrypted = encrypt(row.contact_email)
        row.contact_email_hash = email_hash(row.contact_email)
        row.contact_email_masked = mask_email(row.contact_email)[:254]
        batch.append(row)
        if len(batch) >= CHUNK:
            Application.objects.bulk_update(batch, NEW)
            batch = []
    Application.objects.bulk_update(batch, NEW)


def decrypt_contacts(apps, schema_editor):
    Application = apps.get_model("merchants", "MerchantApplication")
    batch = []
    encrypted = ["contact_name_encrypted", "contact_phone_encrypted", "contact_email_encrypted"]
    for row in Application.objects.only("pk", *encrypted).order_by("pk").iterator(chunk_size=CHUNK):
        row.contact_name = decrypt(row.contact_name_encrypted)[:100] if row.contact_name_encrypted else ""
        row.contact_phone = decrypt(row.contact_phone_encrypted)[:20] if row.contact_phone_encrypted else ""
        row.contact_email = decrypt(row.contact_email_encrypted)[:254] if row.contact_email_encrypted else ""
        batch.append(row)
        if len(batch) >= CHUNK:
            Application.objects.bulk_update(batch, OLD)
            batch = []
    Application.objects.bulk_update(batch, OLD)


def _text(name, verbose_name):
    return migrations.AddField(
        model_name="merchantapplication",
        name=name,
        field=models.TextField(default="", editable=False, verbose_name=verbose_name),
        preserve_default=False,
    )


def _char(name, verbose_name, max_length, db_index=False):
    return migrations.AddField(
        model_name="merchantapplication",
        name=name,
        field=models.CharField(
            db_index=db_index, default="", editable=False, max_length=max_length, verbose_name=verbose_name
        ),
        preserve_default=False,
    )


class Migration(migrations.Migration):
    dependencies = [("merchants", "0011_drop_events_catch_up_schedule")]

    operations = [
        _text("contact_name_encrypted", "contact name (encrypted)"),
        _char("contact_name_masked", "contact name", 100),
        _text("contact_phone_encrypted", "contact phone (encrypted)"),
        _char("contact_phone_hash", "contact phone hash", 64, db_index=True),
        _char("contact_phone_last4", "contact phone, last four", 4),
        _text("contact_email_encrypted", "contact email (encrypted)"),
        _char("contact_email_hash", "contact email hash", 64, db_index=True),
        _char("contact_email_masked", "contact email", 254),
        migrations.RunPython(encrypt_contacts, decrypt_contacts),
        # Defaults first, so that undoing the removals can add the columns back to rows that have them.
        migrations.AlterField(
            model_name="merchantapplication",
            name="contact_name",
            field=models.CharField(default="", max_length=100, verbose_name="contact name"),
        ),
        migrations.AlterField(
            model_name="merchantapplication",
            name="contact_phone",
            field=models.CharField(default="", max_length=20, verbose_name="contact phone"),
        ),
        migrations.AlterField(
            model_name="merchantapplication",
            name="contact_email",
            field=models.EmailField(default="", max_length=254, verbose_name="contact email"),
        ),
        migrations.RemoveField(model_name="merchantapplication", name="contact_name"),
        migrations.RemoveField(model_name="merchantapplication", name="contact_phone"),
        migrations.RemoveField(model_name="merchantapplication", name="contact_email"),
    ]

"""Agreement tokens stop being stored in the clear: each existing token's keyed hash and hint are written here, and
0022 drops the plaintext column (which cannot be brought back from the hashes: 0022 refuses to be reversed while
any agreement exists)."""

from typing import Any

from django.db import migrations, models

from core.crypto import keyed_hash

BATCH = 1_000


def hash_tokens(apps: Any, schema_editor: Any) -> None:
    agreement_model = apps.get_model("payments", "Agreement")
    pending = agreement_model.objects.filter(token_hash__isnull=True).order_by("pk").only("pk", "token")
    batch = []
    for agreement in pending.iterator(chunk_size=BATCH):
        agreement.token_hash = keyed_hash(agreement.token, purpose="agreement-token")
        agreement.token_hint = f"{agreement.token[:4]}…{agreement.token[-4:]}"
        batch.append(agreement)
        if len(batch) == BATCH:
            agreement_model.objects.bulk_update(batch, ["token_hash", "token_hint"])
            batch = []
    agreement_model.objects.bulk_update(batch, ["token_hash", "token_hint"])


class Migration(migrations.Migration):
    dependencies = [("payments", "0020_orphan_sweep_permissions")]

    operations = [
        migrations.AddField(
            model_name="agreement",
            name="token_hash",
            field=models.CharField(editable=False, max_length=64, null=True, unique=True, verbose_name="token hash"),
        ),
        migrations.AddField(
            model_name="agreement",
            name="token_hint",
            field=models.CharField(default="", editable=False, max_length=16, verbose_name="token"),
            preserve_default=False,
        ),
        migrations.RunPython(hash_tokens, migrations.RunPython.noop),
    ]

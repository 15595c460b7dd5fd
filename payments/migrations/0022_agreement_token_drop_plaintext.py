from typing import Any

from django.db import migrations, models
from django.db.migrations.exceptions import IrreversibleError


def refuse_to_restore(apps: Any, schema_editor: Any) -> None:
    """Reversing would give every agreement a new token its merchant does not have: only an empty table goes back."""
    if apps.get_model("payments", "Agreement").objects.exists():
        raise IrreversibleError(
            "Agreement tokens are stored hashed only: the plaintext column cannot be restored while agreements exist."
        )


class Migration(migrations.Migration):
    dependencies = [("payments", "0021_agreement_token_hash")]

    operations = [
        migrations.AlterField(
            model_name="agreement",
            name="token_hash",
            field=models.CharField(editable=False, max_length=64, unique=True, verbose_name="token hash"),
        ),
        migrations.RemoveField(model_name="agreement", name="token"),
        migrations.RunPython(migrations.RunPython.noop, refuse_to_restore),
    ]

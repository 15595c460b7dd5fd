from django.db import migrations

from core.roles import grant_permissions, model_permissions

ALL = ("add", "change", "delete", "view")
MODELS = (
    "members.pointsprogram",
    "members.cardproduct",
    "members.binrange",
    "members.cardholder",
    "members.card",
    "members.linkedaccount",
    "members.bindingchallenge",
    "members.consenttext",
    "members.consent",
    "members.consentevent",
)
# Bank operators act on their bank's cards and accounts (freeze, unfreeze) and correct a cardholder's display name
# or verification level; programs, products, BINs, challenges and consents they read. Auditors read.
BANK_CHANGES = ("members.cardholder", "members.card", "members.linkedaccount")
BANK_VIEWS = tuple(label for label in MODELS if label != "members.consenttext")


def forwards(apps, schema_editor):
    operators = []
    for label in BANK_VIEWS:
        operators += model_permissions(label, ["view"])
    for label in BANK_CHANGES:
        operators += model_permissions(label, ["change"])
    auditors = []
    for label in BANK_VIEWS:
        auditors += model_permissions(label, ["view"])
    alliance = []
    for label in MODELS:
        alliance += model_permissions(label, ALL)
    grant_permissions(
        apps,
        {"Alliance operators": alliance, "Bank operators": operators, "Bank auditors": auditors},
    )


class Migration(migrations.Migration):
    dependencies = [("members", "0003_cardholder_cardproduct_card_binrange_consenttext_and_more")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]

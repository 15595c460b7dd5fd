"""The zh-hans admin speaks Chinese: every label an operator reads — field names, model names, choices — is marked for
translation and translated."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.test import Client
from django.urls import reverse
from django.utils import translation
from django.utils.functional import Promise

from tests.factories import FACTORIES, PASSWORD, AllianceOperatorFactory

OURS = ("core", "members", "merchants", "rewards", "payments", "alliance")
AUTOMATIC = {"id", "annual_fee_currency"}  # Django's own "ID" and djmoney's currency column


def _labels() -> list[tuple[str, Any]]:
    labels: list[tuple[str, Any]] = []
    for model in apps.get_models():
        if model._meta.app_label not in OURS:
            continue
        name = model._meta.label
        labels += [(f"{name} (model)", model._meta.verbose_name), (f"{name} (plural)", model._meta.verbose_name_plural)]
        for field in model._meta.local_fields:
            if field.name in AUTOMATIC:
                continue
            labels.append((f"{name}.{field.name}", field.verbose_name))
            for value, label in field.flatchoices or ():
                if value not in ("", None):
                    labels.append((f"{name}.{field.name}={value}", label))
    return labels


def _untranslated(english: str, chinese: str) -> bool:
    # Identical is fine only for a label with no English words in it (a code such as "BIN" or "MCC").
    return english == chinese and re.search(r"[a-z]{2,}", english) is not None


def test_every_label_is_marked_for_translation() -> None:
    unmarked = [where for where, label in _labels() if not isinstance(label, Promise)]
    assert not unmarked, unmarked


def test_every_label_has_a_chinese_translation() -> None:
    missing = []
    for where, label in _labels():
        with translation.override("en"):
            english = str(label)
        with translation.override("zh-hans"):
            chinese = str(label)
        if _untranslated(english, chinese):
            missing.append(f"{where}: {english}")
    assert not missing, missing


@pytest.mark.django_db
@pytest.mark.parametrize("label", ["payments.paymentintent", "rewards.hold", "members.card", "members.bankoperator"])
def test_admin_pages_show_chinese_labels(label: str) -> None:
    obj = FACTORIES[label]()
    model = type(obj)
    client = Client(HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert client.login(username=AllianceOperatorFactory().username, password=PASSWORD)
    info = (model._meta.app_label, model._meta.model_name)
    assert model in admin.site._registry
    for url in (
        reverse("admin:{}_{}_changelist".format(*info)),
        reverse("admin:{}_{}_change".format(*info), args=[obj.pk]),
    ):
        page = client.get(url).content.decode()
        for english in ("User:", "Program:", ">BANK<", ">PRODUCT<", "Cardholder:", "minor unit"):
            assert english not in page, (url, english)

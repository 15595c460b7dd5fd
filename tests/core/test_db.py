"""core.db.PreparedQuery: a queryset compiled once per process, each call returning what the queryset would."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db.models import Count
from django.db.models.sql.compiler import SQLCompiler

from core.db import PreparedQuery
from members.models import Card, Cardholder
from tests.factories import CardFactory

pytestmark = pytest.mark.django_db

CARDS = PreparedQuery(
    lambda card_id: Card.objects.select_related("cardholder", "product", "bank").filter(pk=card_id)[:1], -91
)


def test_it_returns_what_the_queryset_returns_with_the_related_rows_loaded(django_assert_num_queries: Any) -> None:
    card, other = CardFactory(), CardFactory()
    expected = Card.objects.select_related("cardholder", "product", "bank").get(pk=card.pk)
    with django_assert_num_queries(1):
        found = CARDS.first(card.pk)
        assert found is not None
        assert (found.pk, found.cardholder.display_name, found.product.name, found.bank.code) == (
            expected.pk,
            expected.cardholder.display_name,
            expected.product.name,
            expected.bank.code,
        )
    assert {f.attname: getattr(found, f.attname) for f in Card._meta.concrete_fields} == {
        f.attname: getattr(expected, f.attname) for f in Card._meta.concrete_fields
    }
    assert found._state.adding is False
    assert found._state.db == "default"
    assert CARDS.first(other.pk).pk == other.pk  # type: ignore[union-attr]
    assert CARDS.first(-1) is None
    assert CARDS.all(-1) == []


def test_it_compiles_once(monkeypatch: pytest.MonkeyPatch) -> None:
    card = CardFactory()
    query = PreparedQuery(lambda card_id: Card.objects.filter(pk=card_id), -92)
    compiled: list[int] = []
    original = SQLCompiler.as_sql

    def counting(self: SQLCompiler, *args: Any, **kwargs: Any) -> Any:
        compiled.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SQLCompiler, "as_sql", counting)
    for _ in range(3):
        assert [c.pk for c in query.all(card.pk)] == [card.pk]
    assert len(compiled) == 1


def test_deferred_fields_and_annotations() -> None:
    card = CardFactory()
    CardFactory(cardholder=card.cardholder)
    only = PreparedQuery(lambda holder_id: Card.objects.filter(cardholder_id=holder_id).only("id").order_by("id"), -93)
    assert [c.get_deferred_fields() >= {"last4"} for c in only.all(card.cardholder_id)] == [True, True]
    counted = PreparedQuery(
        lambda holder_id: Cardholder.objects.filter(pk=holder_id).annotate(cards_held=Count("cards")), -94
    )
    [holder] = counted.all(card.cardholder_id)
    assert holder.cards_held == 2  # type: ignore[attr-defined]


def test_bad_sentinels_and_values_are_refused() -> None:
    with pytest.raises(TypeError):
        PreparedQuery(lambda moment: Card.objects.filter(created_at__gt=moment), dt.datetime(2000, 1, 1))
    twice = PreparedQuery(
        lambda card_id: Card.objects.filter(pk=card_id) | Card.objects.filter(cardholder_id=card_id), -95
    )
    with pytest.raises(ValueError, match="found 2 times"):
        twice.all(1)
    query = PreparedQuery(lambda card_id: Card.objects.filter(pk=card_id), -96)
    with pytest.raises(TypeError):
        query.all("1")
    with pytest.raises(TypeError):
        query.all(1, 2)

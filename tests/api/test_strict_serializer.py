"""Input serializers share their built fields between instances as shallow copies: each instance binds its own."""

from __future__ import annotations

import pytest
from rest_framework import serializers

from core.api.fields import StrictCharField, StrictIntegerField, StrictSerializer
from payments.apis import PaymentCreateIn


class _Inner(StrictSerializer):
    code = StrictCharField(max_length=3)


class _Outer(StrictSerializer):
    amount = StrictIntegerField(min_value=1)
    inner = _Inner()
    note = StrictCharField(required=False, default="")


def test_each_instance_binds_its_own_fields() -> None:
    first, second = _Outer(data={}), _Outer(data={})
    for name in ("amount", "inner", "note"):
        assert first.fields[name] is not second.fields[name]
        assert first.fields[name].parent is first
        assert second.fields[name].parent is second
        assert first.fields[name].field_name == name


def test_validation_is_independent_across_instances() -> None:
    good = _Outer(data={"amount": 5, "inner": {"code": "abc"}})
    bad = _Outer(data={"amount": 0, "inner": {"code": "abcd"}, "extra": 1})
    assert good.is_valid(), good.errors
    assert good.validated_data == {"amount": 5, "inner": {"code": "abc"}, "note": ""}
    assert not bad.is_valid()
    assert set(bad.errors) == {"extra"}  # unknown fields are refused before the rest
    worse = _Outer(data={"amount": 0, "inner": {"code": "abcd"}})
    assert not worse.is_valid()
    assert set(worse.errors) == {"amount", "inner"}
    again = _Outer(data={"amount": 7, "inner": {"code": "xyz"}, "note": "n"})
    assert again.is_valid(), again.errors
    assert again.validated_data["inner"] == {"code": "xyz"}


def test_a_payment_body_validates_the_same_on_every_instance() -> None:
    body = {"amount": 100, "currency": "CNY", "payment_method": {"type": "payment_code", "code": "1" * 18}}
    for _ in range(3):
        serializer = PaymentCreateIn(data=body)
        assert serializer.is_valid(), serializer.errors
        assert serializer.validated_data["payment_method"] == {"type": "payment_code", "code": "1" * 18}
        assert serializer.validated_data["metadata"] == {}
    wrong = PaymentCreateIn(data={**body, "payment_method": {"type": "payment_code"}})
    assert not wrong.is_valid()
    assert "payment_method" in wrong.errors


def test_partial_updates_and_context_reading_fields_are_refused() -> None:
    with pytest.raises(TypeError, match="partial"):
        _Outer(data={}, partial=True)

    class _ReadsContext(StrictSerializer):
        who = serializers.HiddenField(default=serializers.CurrentUserDefault())

    with pytest.raises(TypeError, match="reads the context"):
        _ReadsContext(data={}).fields  # noqa: B018

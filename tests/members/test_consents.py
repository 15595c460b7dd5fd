from __future__ import annotations

from typing import Any

import pytest

from core.errors import ValidationFailed
from members import selectors, services
from members.models import ConsentEvent, ConsentPurpose
from tests.factories import make_cardholder, make_consent_text

pytestmark = pytest.mark.django_db


def test_no_row_means_not_granted_and_grant_is_honoured_at_once(holder: Any) -> None:
    text = make_consent_text(ConsentPurpose.PERSONALISED_OFFERS)
    assert selectors.consent_granted(holder, ConsentPurpose.PERSONALISED_OFFERS) is False
    consent = services.consent_grant(cardholder=holder, purpose=ConsentPurpose.PERSONALISED_OFFERS)
    assert consent.text_id == text.pk
    assert selectors.consent_granted(holder, ConsentPurpose.PERSONALISED_OFFERS) is True
    # Purposes are separate: granting one grants no other.
    assert selectors.consent_granted(holder, ConsentPurpose.MARKETING) is False
    services.consent_withdraw(cardholder=holder, purpose=ConsentPurpose.PERSONALISED_OFFERS)
    assert selectors.consent_granted(holder, ConsentPurpose.PERSONALISED_OFFERS) is False


def test_history_keeps_every_change_with_its_text_version(holder: Any) -> None:
    v1 = make_consent_text(ConsentPurpose.MARKETING)
    services.consent_grant(cardholder=holder, purpose=ConsentPurpose.MARKETING)
    services.consent_grant(cardholder=holder, purpose=ConsentPurpose.MARKETING)  # no change, no event
    services.consent_withdraw(cardholder=holder, purpose=ConsentPurpose.MARKETING)
    v2 = services.consent_text_publish(purpose=ConsentPurpose.MARKETING, text_zh="新版", text_en="New")
    assert v2.version == v1.version + 1
    services.consent_grant(cardholder=holder, purpose=ConsentPurpose.MARKETING)
    events = list(ConsentEvent.objects.filter(cardholder=holder).order_by("id").values_list("action", "text__version"))
    assert events == [("granted", 1), ("withdrawn", 1), ("granted", 2)]


def test_granting_needs_a_published_text(holder: Any) -> None:
    with pytest.raises(ValidationFailed):
        services.consent_grant(cardholder=holder, purpose=ConsentPurpose.SHARE_HOLDINGS)
    with pytest.raises(ValidationFailed):
        services.consent_grant(cardholder=holder, purpose="sell_my_data")


def test_an_outdated_grant_shows_as_such(holder: Any) -> None:
    make_consent_text(ConsentPurpose.SHARE_HOLDINGS)
    services.consent_grant(cardholder=holder, purpose=ConsentPurpose.SHARE_HOLDINGS)
    services.consent_text_publish(purpose=ConsentPurpose.SHARE_HOLDINGS, text_zh="二版", text_en="v2")
    item = next(i for i in selectors.consents_overview(holder) if i["purpose"] == ConsentPurpose.SHARE_HOLDINGS)
    assert (item["granted"], item["agreed_version"], item["outdated"], item["latest"].version) == (True, 1, True, 2)


def test_batch_grant_and_withdraw() -> None:
    make_consent_text(ConsentPurpose.MARKETING)
    holders = [make_cardholder() for _ in range(3)]
    assert services.consents_grant_many(cardholders=holders, purpose=ConsentPurpose.MARKETING) == 3
    assert services.consents_grant_many(cardholders=holders, purpose=ConsentPurpose.MARKETING) == 0
    assert services.consents_withdraw_many(cardholders=holders[:1], purpose=ConsentPurpose.MARKETING) == 1
    assert [selectors.consent_granted(h, ConsentPurpose.MARKETING) for h in holders] == [False, True, True]
    assert ConsentEvent.objects.filter(cardholder=holders[0]).count() == 2

"""Merchants' promotions in the admin: who sees which, who decides co-funding and pausing, what the engine does after,
the audit trail; and operators editing a cardholder's segment tags."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from core.errors import PermissionDenied
from core.models import AuditLog
from members.models import Cardholder
from rewards import services
from rewards.models import Promotion, PromotionUse
from rewards.services import promotions as engine
from tests.factories import (
    AllianceOperatorFactory,
    CardholderFactory,
    MemberBankFactory,
    MerchantFactory,
    bank_operator,
    card_at,
    make_promotion,
)

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:rewards_promotion_changelist"


@pytest.fixture
def world() -> dict[str, Any]:
    sponsor, cofunder, other = MemberBankFactory(), MemberBankFactory(), MemberBankFactory()
    merchant = MerchantFactory(sponsor_bank=sponsor, spend_category="other")
    return {
        "sponsor": sponsor,
        "cofunder": cofunder,
        "other": other,
        "merchant": merchant,
        "own": promotion(merchant, name="own"),
        "cofunded": promotion(
            merchant,
            name="cofunded",
            cofunder=cofunder,
            cofunder_share=Decimal("0.5"),
            cofunding=Promotion.Cofunding.PENDING,
        ),
    }


def promotion(merchant: Any, **fields: Any) -> Promotion:
    return make_promotion(merchant=merchant, **{"name": "test", **fields})


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def listed(client: Client) -> set[str]:
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    return {row.name for row in response.context["cl"].result_list}


def act(client: Client, action: str, promotion: Promotion) -> Any:
    return client.post(reverse(CHANGELIST), {"action": action, "_selected_action": [promotion.pk]}, follow=True)


def context(merchant: Any) -> engine.Context:
    return engine.Context(
        merchant_id=merchant.pk,
        livemode=True,
        currency="CNY",
        amount=10_000,
        at=timezone.now(),
        method="card",
        category="other",
    )


def test_the_sponsor_sees_its_merchants_promotions_the_cofunder_the_cofunded_one_another_bank_none(
    world: dict[str, Any],
) -> None:
    assert listed(signed_in(bank_operator(world["sponsor"]))) == {"own", "cofunded"}
    assert listed(signed_in(bank_operator(world["cofunder"]))) == {"cofunded"}
    assert listed(signed_in(bank_operator(world["other"]))) == set()
    assert listed(signed_in(AllianceOperatorFactory())) == {"own", "cofunded"}
    outsider = signed_in(bank_operator(world["other"]))
    page = outsider.get(reverse("admin:rewards_promotion_change", args=[world["own"].pk]))
    assert page.status_code == 404


def test_the_list_shows_budget_used_and_left_as_money(world: dict[str, Any]) -> None:
    Promotion.objects.filter(pk=world["own"].pk).update(committed=25_050, uses=3)
    response = signed_in(bank_operator(world["sponsor"])).get(reverse(CHANGELIST))
    html = response.content.decode()
    assert "250.50 CNY" in html  # used
    assert "749.50 CNY" in html  # left
    page = signed_in(bank_operator(world["sponsor"])).get(
        reverse("admin:rewards_promotion_change", args=[world["own"].pk])
    )
    assert page.status_code == 200
    assert b'name="name"' not in page.content  # read-only: no input for the merchant's terms


def test_only_the_cofunders_operator_approves_and_then_the_engine_applies_it(world: dict[str, Any]) -> None:
    cofunded = world["cofunded"]
    assert [line.rule.name for line in engine.price(context(world["merchant"])).lines] == ["own"]
    pending = {n.rule.name: n.reason for n in engine.price(context(world["merchant"])).not_applied}
    assert pending["cofunded"] == "cofunding_pending"

    for user in (bank_operator(world["sponsor"]), bank_operator(world["other"])):
        act(signed_in(user), "approve_cofunding", cofunded)
        cofunded.refresh_from_db()
        assert cofunded.cofunding == Promotion.Cofunding.PENDING
    with pytest.raises(PermissionDenied):
        services.promotion_cofunding_decide(
            promotion_id=cofunded.pk, approve=True, operator=bank_operator(world["sponsor"])
        )

    approver = bank_operator(world["cofunder"])
    response = act(signed_in(approver), "approve_cofunding", cofunded)
    assert response.status_code == 200
    cofunded.refresh_from_db()
    assert cofunded.cofunding == Promotion.Cofunding.APPROVED
    assert cofunded.cofunding_decided_by == approver
    assert cofunded.cofunding_decided_at is not None
    # The engine read the saved row: no longer waiting, only kept out by the exclusive one before it.
    reasons = {n.rule.name: n.reason for n in engine.price(context(world["merchant"])).not_applied}
    assert reasons["cofunded"] != "cofunding_pending"
    now = timezone.now()
    Promotion.objects.filter(pk=world["own"].pk).update(stacking="stackable", priority=1, updated_at=now)
    Promotion.objects.filter(pk=cofunded.pk).update(stacking="stackable", updated_at=now)
    pricing = engine.price(context(world["merchant"]))
    assert [line.rule.name for line in pricing.lines] == ["own", "cofunded"]
    assert pricing.discount == 2_000
    assert next(line.rule for line in pricing.lines if line.rule.name == "cofunded").cofunder_share == Decimal("0.5")

    audit = AuditLog.objects.get(action="promotion.cofunding_approved")
    assert (audit.actor_id, audit.object_id, audit.bank_id) == (approver.pk, str(cofunded.pk), world["cofunder"].pk)
    assert (audit.before, audit.after) == ({"cofunding": "pending"}, {"cofunding": "approved"})

    act(signed_in(approver), "reject_cofunding", cofunded)  # decided already: refused, nothing changes
    cofunded.refresh_from_db()
    assert cofunded.cofunding == Promotion.Cofunding.APPROVED


def test_a_rejected_cofunding_never_applies(world: dict[str, Any]) -> None:
    services.promotion_cofunding_decide(
        promotion_id=world["cofunded"].pk, approve=False, operator=bank_operator(world["cofunder"])
    )
    assert AuditLog.objects.filter(action="promotion.cofunding_rejected").count() == 1
    assert "cofunded" not in [line.rule.name for line in engine.price(context(world["merchant"])).lines]


def test_the_sponsor_pauses_a_promotion_the_cofunder_may_not(world: dict[str, Any]) -> None:
    own = world["own"]
    act(signed_in(bank_operator(world["cofunder"])), "pause", world["cofunded"])
    world["cofunded"].refresh_from_db()
    assert world["cofunded"].status == Promotion.Status.ACTIVE
    assert [line.rule.name for line in engine.price(context(world["merchant"])).lines] == ["own"]

    act(signed_in(bank_operator(world["sponsor"])), "pause", own)
    own.refresh_from_db()
    assert own.status == Promotion.Status.PAUSED
    assert engine.price(context(world["merchant"])).lines == []  # the engine saw the saved row
    assert AuditLog.objects.filter(action="promotion.paused", object_id=str(own.pk)).count() == 1


def test_uses_are_scoped_and_only_the_alliance_sees_the_cardholder(world: dict[str, Any]) -> None:
    holder = CardholderFactory()
    use = PromotionUse.objects.create(
        promotion=world["cofunded"],
        cardholder=holder,
        payment="pi_test_1",
        day=timezone.localdate(),
        discount=1_000,
        cost=1_000,
        cofunder_cost=500,
    )
    url = reverse("admin:rewards_promotionuse_changelist")
    alliance = signed_in(AllianceOperatorFactory()).get(url)
    assert str(holder) in alliance.content.decode()
    cofunder = signed_in(bank_operator(world["cofunder"])).get(url)
    assert [row.pk for row in cofunder.context["cl"].result_list] == [use.pk]
    html = cofunder.content.decode()
    assert str(holder) not in html
    assert holder.name_masked not in html
    assert "5.00 CNY" in html  # the bank's part
    assert signed_in(bank_operator(world["other"])).get(url).context["cl"].result_list.count() == 0
    page = signed_in(bank_operator(world["sponsor"])).get(reverse("admin:rewards_promotionuse_change", args=[use.pk]))
    assert page.status_code == 200
    assert holder.name_masked not in page.content.decode()


# --- segment tags ---------------------------------------------------------------------------------------------------


def _cardholder_form(holder: Cardholder, tags: str) -> dict[str, Any]:
    return {
        "verification_level": holder.verification_level,
        "new_display_name": "",
        "segment_tags": tags,
        "cards-TOTAL_FORMS": "0",
        "cards-INITIAL_FORMS": "0",
        "linked_accounts-TOTAL_FORMS": "0",
        "linked_accounts-INITIAL_FORMS": "0",
    }


def _post_tags(client: Client, holder: Cardholder, tags: str) -> Any:
    url = reverse("admin:members_cardholder_change", args=[holder.pk])
    form = client.get(url).context["adminform"].form
    data = _cardholder_form(holder, tags)
    for formset in client.get(url).context["inline_admin_formsets"]:
        prefix = formset.formset.prefix
        data[f"{prefix}-TOTAL_FORMS"] = str(formset.formset.total_form_count())
        data[f"{prefix}-INITIAL_FORMS"] = str(formset.formset.initial_form_count())
        for n, inline in enumerate(formset.formset.forms):
            data[f"{prefix}-{n}-id"] = inline.instance.pk
            data[f"{prefix}-{n}-cardholder"] = holder.pk
    assert form is not None
    return client.post(url, data)


def test_an_operator_sets_segment_tags_audited_and_bad_tags_are_refused() -> None:
    bank = MemberBankFactory()
    holder = card_at(CardholderFactory(), bank).cardholder
    client = signed_in(bank_operator(bank))
    response = _post_tags(client, holder, "dining,  frequent_traveller, dining")
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    holder.refresh_from_db()
    assert holder.segment_tags == ["dining", "frequent_traveller"]
    audit = AuditLog.objects.filter(action="admin.change", object_id=str(holder.pk)).latest("pk")
    assert (audit.before["segment_tags"], audit.after["segment_tags"]) == ([], ["dining", "frequent_traveller"])
    assert audit.bank_id == bank.pk

    for bad in ("Dining", "no spaces", "é", "x" * 33, ",".join(f"t{n}" for n in range(11))):
        response = _post_tags(client, holder, bad)
        assert response.status_code == 200, bad
        assert response.context["adminform"].form.errors["segment_tags"], bad
    holder.refresh_from_db()
    assert holder.segment_tags == ["dining", "frequent_traveller"]

    other = card_at(CardholderFactory(), MemberBankFactory()).cardholder
    assert client.get(reverse("admin:members_cardholder_change", args=[other.pk])).status_code == 404

"""Segments: the nightly job's rules at their edges, consent (only consenting cardholders, removed at once on
withdrawal), idempotence and a query count that does not grow with cardholders, the rules' admin, the portal page in
both languages, and the merchant aggregates over cohorts of at least 20."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from alliance import services
from alliance.models import SegmentMembership, SegmentRule
from core.models import AuditLog, JobRun
from core.personal import MIN_COHORT
from members.models import Cardholder, ConsentPurpose
from members.services import consent_grant, consent_withdraw, consents_withdraw_many
from payments.models import PaymentIntent
from tests.api.conftest import World, channel_fake, fresh_health, idem, new_api, world  # noqa: F401  (fixtures)
from tests.factories import (
    PASSWORD,
    AllianceOperatorFactory,
    CardholderFactory,
    MemberBankFactory,
    MerchantFactory,
    bank_operator,
    make_consent_text,
)
from tests.i18n import shown

pytestmark = pytest.mark.django_db
OFFERS = ConsentPurpose.PERSONALISED_OFFERS
NOW = dt.datetime(2026, 6, 30, 2, 15, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def rules() -> dict[str, SegmentRule]:
    """Two rules of our own instead of the defaults (which the data migration seeded): three dining payments and
    ¥100 within 30 days; ¥500 anywhere within 60 days."""
    SegmentRule.objects.all().delete()
    make_consent_text(OFFERS)
    return {
        "dining": SegmentRule.objects.create(
            code="dining",
            name="美食达人",
            name_en="Food lover",
            description="经常外出就餐。",
            description_en="Eats out a lot.",
            categories=["dining"],
            window_days=30,
            min_payments=3,
            min_amount=10_000,
        ),
        "big": SegmentRule.objects.create(
            code="big-spender", name="大额消费", name_en="Big spender", window_days=60, min_amount=50_000
        ),
    }


def consenting(**fields: Any) -> Cardholder:
    holder = CardholderFactory(**fields)
    consent_grant(cardholder=holder, purpose=OFFERS)
    return holder


def pay(
    holder: Cardholder,
    amount: int,
    at: dt.datetime,
    *,
    merchant: Any = None,
    refunded: int = 0,
    category: str = "dining",
    **fields: Any,
) -> PaymentIntent:
    values: dict[str, Any] = {
        "merchant": merchant or MerchantFactory(),
        "cardholder": holder,
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": refunded,
        "amount_refund_reserved": refunded,
        "status": "succeeded",
        "captured_at": at,
        "created_at": at,  # made when captured, as the capture window has it
        "spend_category": category,
        "livemode": True,
        **fields,
    }
    return PaymentIntent.objects.create(**values)


def tags(holder: Cardholder) -> list[str]:
    holder.refresh_from_db()
    return list(holder.segment_tags)


# --- the rules --------------------------------------------------------------------------------------------------------


def test_a_rule_qualifies_exactly_at_its_thresholds_and_its_window(rules: dict[str, SegmentRule]) -> None:
    edge = NOW - dt.timedelta(days=30)
    exact = consenting()
    for amount, at in ((4_000, edge), (3_000, NOW - dt.timedelta(days=1)), (3_000, NOW - dt.timedelta(seconds=1))):
        pay(exact, amount, at)
    early = consenting()  # its first payment a second before the window: two payments in it
    for amount, at in ((4_000, edge - dt.timedelta(seconds=1)), (3_000, NOW - dt.timedelta(days=1)), (3_000, NOW)):
        pay(early, amount, at)
    short = consenting()  # three payments, ¥99.99
    for amount in (4_000, 3_000, 2_999):
        pay(short, amount, NOW - dt.timedelta(days=2))
    refunds = consenting()  # four payments: one refunded in full (not counted), one in part (counted net)
    pay(refunds, 4_000, NOW - dt.timedelta(days=3))
    pay(refunds, 4_000, NOW - dt.timedelta(days=3))
    pay(refunds, 4_000, NOW - dt.timedelta(days=3), refunded=2_000)
    pay(refunds, 9_000, NOW - dt.timedelta(days=3), refunded=9_000)
    elsewhere = consenting()  # groceries, test mode, another currency, not captured: none counts
    pay(elsewhere, 5_000, NOW - dt.timedelta(days=1), category="groceries")
    pay(elsewhere, 5_000, NOW - dt.timedelta(days=1), livemode=False)
    pay(elsewhere, 5_000, NOW - dt.timedelta(days=1), currency="HKD")
    pay(elsewhere, 5_000, NOW - dt.timedelta(days=1), status="canceled")

    report = services.segments_compute(now=NOW)

    assert [tags(holder) for holder in (exact, early, short, refunds, elsewhere)] == [
        ["dining"],
        [],
        [],
        ["dining"],
        [],
    ]
    derived = SegmentMembership.objects.get(cardholder=exact)
    assert (derived.tag, derived.payments_count, derived.amount, derived.window_days, derived.rule_version) == (
        "dining",
        3,
        10_000,
        30,
        1,
    )
    assert derived.computed_at == NOW
    assert SegmentMembership.objects.get(cardholder=refunds).payments_count == 3
    assert report.counts() == {"qualified": 2, "removed": 0, "written": 2, "cardholders": 2}


def test_a_spend_rule_without_categories_counts_every_category(rules: dict[str, SegmentRule]) -> None:
    holder = consenting()
    pay(holder, 30_000, NOW - dt.timedelta(days=59), category="travel")
    pay(holder, 20_000, NOW - dt.timedelta(days=1), category="fuel")
    below = consenting()
    pay(below, 49_999, NOW - dt.timedelta(days=1), category="online")
    services.segments_compute(now=NOW)
    assert (tags(holder), tags(below)) == (["big-spender"], [])
    assert SegmentMembership.objects.get(cardholder=holder).amount == 50_000


# --- consent ----------------------------------------------------------------------------------------------------------


def _qualifying(holder: Cardholder, at: dt.datetime = NOW) -> Cardholder:
    """Three dining payments of ¥50 the day before `at`."""
    for _ in range(3):
        pay(holder, 5_000, at - dt.timedelta(days=1))
    return holder


def test_only_cardholders_who_consent_now_are_tagged() -> None:
    never = _qualifying(CardholderFactory(segment_tags=["vip"]))
    withdrawn = _qualifying(consenting())
    consent_withdraw(cardholder=withdrawn, purpose=OFFERS)
    granted = _qualifying(consenting())
    services.segments_compute(now=NOW)
    assert (tags(never), tags(withdrawn), tags(granted)) == (["vip"], [], ["dining"])
    assert set(SegmentMembership.objects.values_list("cardholder_id", flat=True)) == {granted.pk}


def test_the_job_keeps_operator_tags_and_removes_the_tags_no_longer_earned(rules: dict[str, SegmentRule]) -> None:
    holder = _qualifying(consenting(segment_tags=["vip", "dining"]))
    pay(holder, 60_000, NOW - dt.timedelta(days=40), category="travel")
    services.segments_compute(now=NOW)
    assert tags(holder) == ["vip", "big-spender", "dining"]  # the operator's first, then the derived, by code
    later = NOW + dt.timedelta(days=25)  # the dining payments still in their window, the big one out of its own
    report = services.segments_compute(now=later)
    assert tags(holder) == ["vip", "dining"]
    assert report.removed == 1
    SegmentRule.objects.filter(code="dining").update(active=False)
    services.segments_compute(now=later)
    assert tags(holder) == ["vip"]
    assert not SegmentMembership.objects.filter(cardholder=holder).exists()


def test_withdrawal_removes_tags_and_derivations_at_once_and_the_next_quote_drops_the_segment_offer(
    world: World,  # noqa: F811
) -> None:
    holder = world.card.cardholder
    holder.segment_tags = ["vip"]
    holder.save(update_fields=["segment_tags"])
    consent_grant(cardholder=holder, purpose=OFFERS)
    for _ in range(3):
        pay(holder, 5_000, timezone.now() - dt.timedelta(days=1), merchant=world.merchant)
    ends_at = _days(5)  # once: the offer for everyone must cover the targeted one's dates to the second
    for fields in ({"name": "for everyone", "amount_off": 100}, {"name": "diners", "segment_tags": ["dining"]}):
        status, out = world.api.post(
            "promotions",
            {"kind": "amount_off", "amount_off": 1000, "budget": 100_000, "ends_at": ends_at, "stacking": "stackable"}
            | fields,
            key=idem(),
        )
        assert status == 201, out
    targeted = out["id"]
    services.segments_compute()
    assert tags(holder) == ["vip", "dining"]
    assert targeted in _applied(world)

    with transaction.atomic():
        consent_withdraw(cardholder=holder, purpose=OFFERS)
        assert holder.segment_tags == []
        assert tags(holder) == []  # operator-set tags too
        assert not SegmentMembership.objects.filter(cardholder=holder).exists()
    assert targeted not in _applied(world)
    consent_grant(cardholder=holder, purpose=OFFERS)  # granted again: nothing comes back before the next run
    assert targeted not in _applied(world)
    services.segments_compute()
    assert targeted in _applied(world)


def _days(days: float) -> int:
    return int((timezone.now() + dt.timedelta(days=days)).timestamp())


def _applied(shop: World) -> list[str]:
    status, out = shop.api.post(
        "payments/quote",
        {"amount": 10_000, "currency": "CNY", "payment_method": {"type": "card_token", "token": shop.card.token}},
    )
    assert status == 200, out
    return [line["promotion"] for line in out["promotions"]]


def test_withdrawals_in_bulk_remove_derivations_too() -> None:
    first, second, other = (_qualifying(consenting()) for _ in range(3))
    services.segments_compute(now=NOW)
    consents_withdraw_many(cardholders=[first, second], purpose=OFFERS)
    assert (tags(first), tags(second), tags(other)) == ([], [], ["dining"])
    assert list(SegmentMembership.objects.values_list("cardholder_id", flat=True)) == [other.pk]


# --- the job ----------------------------------------------------------------------------------------------------------


def test_the_job_is_idempotent_and_recorded() -> None:
    holder = _qualifying(consenting())
    first = services.segments_compute(now=NOW)
    computed = SegmentMembership.objects.get(cardholder=holder).computed_at
    again = services.segments_compute(now=NOW + dt.timedelta(hours=1))
    assert first.counts() == {"qualified": 1, "removed": 0, "written": 1, "cardholders": 1}
    assert again.counts() == {"qualified": 1, "removed": 0, "written": 0, "cardholders": 0}
    assert SegmentMembership.objects.get(cardholder=holder).computed_at == computed
    assert tags(holder) == ["dining"]
    runs = JobRun.objects.filter(job="alliance.segments").order_by("id")
    assert [(run.status, run.done, run.total, run.counts) for run in runs] == [
        ("succeeded", 4, 4, first.counts()),
        ("succeeded", 4, 4, again.counts()),
    ]


def test_the_job_costs_the_same_queries_for_one_cardholder_or_many() -> None:
    def queries(more: int) -> tuple[int, int]:
        """The job's queries once `more` qualifying cardholders were added (each run tags only the new ones)."""
        for _ in range(more):
            _qualifying(consenting())
        with CaptureQueriesContext(connection) as captured:
            report = services.segments_compute(now=NOW)
        assert report.cardholders == more
        return report.qualified, len(captured)

    one, one_queries = queries(1)
    nine, nine_queries = queries(8)
    assert (one, nine) == (1, 9)
    assert one_queries == nine_queries


def test_the_nightly_task_the_command_and_the_beat_schedule() -> None:
    from django_celery_beat.models import PeriodicTask

    from alliance.tasks import segments_nightly

    _qualifying(consenting(), at=timezone.now())
    assert segments_nightly() == {"qualified": 1, "removed": 0, "written": 1, "cardholders": 1}
    out = io.StringIO()
    call_command("segments", stdout=out)
    assert "1 qualifying tags; derivations 0 written, 0 removed; 0 cardholders' tags changed" in out.getvalue()
    task = PeriodicTask.objects.get(task="alliance.segments_nightly")
    assert task.enabled
    assert (task.crontab.hour, task.crontab.minute, str(task.crontab.timezone)) == ("2", "15", "Asia/Shanghai")


def test_the_default_rules_are_seeded() -> None:
    from importlib import import_module

    migration = import_module("alliance.migrations.0007_segment_rules_schedule_and_permissions")
    assert [rule["code"] for rule in migration.RULES] == ["frequent_traveller", "dining", "high_spender"]
    assert migration.RULES[0]["categories"] == ["travel", "overseas"]


# --- the admin --------------------------------------------------------------------------------------------------------


def _client(user: Any) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def _form(**fields: Any) -> dict[str, Any]:
    return {
        "code": "coffee",
        "name": "咖啡客",
        "name_en": "Coffee lover",
        "description": "",
        "description_en": "",
        "categories": ["dining"],
        "window_days": 30,
        "min_payments": 5,
        "min_amount": 0,
        "active": "on",
        **fields,
    }


def test_alliance_operators_keep_the_rules_audited_and_versioned() -> None:
    operator = _client(AllianceOperatorFactory())
    add = reverse("admin:alliance_segmentrule_add")
    response = operator.post(add, _form(categories=["dining", "nonsense"]))
    assert response.status_code == 200  # refused by the form
    response = operator.post(add, _form(min_payments=0, min_amount=0))
    assert response.status_code == 200
    assert "min_payments" in response.context["adminform"].form.errors
    assert operator.post(add, _form()).status_code == 302
    rule = SegmentRule.objects.get(code="coffee")
    assert (rule.version, rule.categories, rule.min_payments) == (1, ["dining"], 5)
    assert AuditLog.objects.filter(action="admin.add", object_id=str(rule.pk)).exists()

    change = reverse("admin:alliance_segmentrule_change", args=[rule.pk])
    assert operator.post(change, _form(name="咖啡达人")).status_code == 302  # words only: same version
    rule.refresh_from_db()
    assert (rule.name, rule.version) == ("咖啡达人", 1)
    assert operator.post(change, _form(min_payments=6, code="renamed")).status_code == 302
    rule.refresh_from_db()
    assert (rule.code, rule.min_payments, rule.version) == ("coffee", 6, 2)  # the code is fixed once created
    audit = AuditLog.objects.filter(action="admin.change", object_id=str(rule.pk)).latest("id")
    assert audit.before is not None
    assert audit.after is not None
    assert (audit.before["min_payments"], audit.after["min_payments"]) == (5, 6)
    delete = reverse("admin:alliance_segmentrule_delete", args=[rule.pk])
    assert operator.get(delete).status_code == 403


def test_bank_operators_do_not_see_the_rules_or_the_derivations() -> None:
    holder = _qualifying(consenting())
    services.segments_compute(now=NOW)
    membership = SegmentMembership.objects.get(cardholder=holder)
    operator = _client(bank_operator(MemberBankFactory()))
    for url in (
        reverse("admin:alliance_segmentrule_changelist"),
        reverse("admin:alliance_segmentrule_add"),
        reverse("admin:alliance_segmentmembership_changelist"),
    ):
        assert operator.get(url).status_code == 403, url
    alliance = _client(AllianceOperatorFactory())
    listing = alliance.get(reverse("admin:alliance_segmentmembership_changelist"))
    assert listing.status_code == 200
    assert list(listing.context["cl"].result_list) == [membership]
    assert alliance.get(reverse("admin:alliance_segmentrule_changelist")).status_code == 200


# --- the portal -------------------------------------------------------------------------------------------------------


def _page(holder: Cardholder, language: str | None = None) -> str:
    client = Client(headers={"accept-language": language}) if language else Client()
    assert client.login(username=holder.user.username, password=PASSWORD)
    response = client.get(reverse("alliance_portal:segments"))
    assert response.status_code == 200
    return response.content.decode()


def test_the_portal_shows_each_tag_with_how_it_was_derived_in_both_languages() -> None:
    holder = _qualifying(consenting(segment_tags=["vip"]))
    services.segments_compute(now=NOW)
    chinese = _page(holder)
    assert "美食达人" in chinese
    assert 'data-tag="vip"' in chinese
    assert 'data-tag="dining"' in chinese
    assert "150.00" in chinese  # ¥150.00 net over three payments
    assert timezone.localtime(NOW).strftime("%Y-%m-%d %H:%M") in chinese  # computed at, in Asia/Shanghai
    assert shown("My segments") in chinese
    assert reverse("members:consents") in chinese
    english = _page(holder, "en")
    assert "Food lover" in english
    assert "At least 3 payments and ¥100.00 spent (net of refunds) in dining in the last 30 days." in english
    assert "Yours: 3 payments, ¥150.00 net of refunds, in the 30 days up to" in english
    assert "Set by an alliance or bank operator" in english
    assert "Personalised offers: granted." in english


def test_without_consent_the_portal_explains_and_shows_no_tags() -> None:
    holder = CardholderFactory(segment_tags=["vip", "dining"])
    english = _page(holder, "en")
    assert "Personalised offers: not granted." in english
    assert "data-tag=" not in english
    assert 'data-rule="dining"' in english  # the rules in force are always explained
    assert "Change your privacy choices" in english
    assert f'href="{reverse("alliance_portal:segments")}"' in english  # the nav's link


# --- what merchants see -----------------------------------------------------------------------------------------------


def _customers(merchant: Any, count: int, tag: str, amount: int = 1_000) -> list[Cardholder]:
    holders = [consenting(segment_tags=[tag]) for _ in range(count)]
    for holder in holders:
        pay(holder, amount, timezone.now() - dt.timedelta(days=1), merchant=merchant, livemode=False)
    return holders


def test_merchants_see_cohorts_of_at_least_20_and_only_their_own_customers(world: World) -> None:  # noqa: F811
    merchant = world.merchant
    _customers(merchant, MIN_COHORT, "dining", amount=1_000)
    _customers(merchant, MIN_COHORT - 1, "big-spender", amount=5_000)
    _customers(merchant, MIN_COHORT - 1, "vip")  # another tag below the threshold: not listed at all
    _customers(MerchantFactory(), 5, "dining")  # another merchant's customers never count
    _customers(merchant, 3, "dining")[0].consents.update(granted=False)  # nor does anyone without the consent
    pay(CardholderFactory(segment_tags=["dining"]), 1_000, timezone.now(), merchant=merchant, livemode=False)
    refunded = consenting(segment_tags=["dining"])  # nor a payment refunded in full
    pay(refunded, 1_000, timezone.now(), merchant=merchant, livemode=False, refunded=1_000)
    status, stats = world.api.get("segments/stats", {"days": 30})
    assert status == 200
    assert (stats["object"], stats["livemode"], stats["days"], stats["min_cohort"]) == ("segment.stats", False, 30, 20)
    assert stats["data"] == [
        {"tag": "big-spender", "label": "Big spender", "suppressed": True, "customers": None, "spend": None},
        {"tag": "dining", "label": "Food lover", "suppressed": False, "customers": 22, "spend": 22_000},
    ]
    live = new_api(merchant, mode="live")
    status, stats = live.get("segments/stats")
    assert status == 200
    assert all(row["suppressed"] for row in stats["data"])  # the test-mode payments are not the live key's
    assert world.api.get("segments/stats", {"days": 0})[0] == 400
    assert world.api.get("segments/stats", {"nonsense": 1})[0] == 400


def test_a_cohort_of_19_is_withheld_and_20_shown(world: World) -> None:  # noqa: F811
    holders = _customers(world.merchant, MIN_COHORT - 1, "dining")
    _, stats = world.api.get("segments/stats")
    assert stats["data"][1] == {"tag": "dining", "label": "Food lover", "suppressed": True, "customers": None,
                                "spend": None}  # fmt: skip
    _customers(world.merchant, 1, "dining")
    _, stats = world.api.get("segments/stats")
    assert stats["data"][1]["customers"] == MIN_COHORT
    assert len(holders) == MIN_COHORT - 1


def test_the_schema_documents_the_endpoint() -> None:
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    schema = out.getvalue()
    assert "/api/v1/segments/stats:" in schema
    assert "operationId: segments_stats" in schema
    assert "SegmentStats" in schema

"""Payments are partitioned by month on their created_at (payments/migrations/0047, docs/scaling.md "Partitioning by
month"): a payment made by the services has a timed public id of its own created_at, and a lookup by public id reads
that millisecond only, while an id made before (random, untimed) still resolves; a payment lands in its month, every
row naming it refers to (id, created_at) and is refused with another time, and follows it when the demo re-dates it;
a payment code pays for one payment, held by the code's row; the services read and update one payment in its
month's partition.

Each test runs in a transaction that is rolled back, DDL included, so the partitions a test makes go with it.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any
from unittest import mock

import pytest
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import translation

from core.calendar import SHANGHAI
from core.errors import NotFound
from core.ids import MILLISECOND, public_id_time
from core.models import ArchivedMonth
from core.partitions import PARTITIONED, partitions, partitions_create, partitions_maintain
from payments import methods, services
from payments.api_support import payment_get
from payments.cardholder_statement import merchant_names_of_payments
from payments.models import Dispute, PaymentAttempt, PaymentCode, PaymentIntent, Refund, RoutingDecision
from payments.services.common import payment_load
from payments.services.refunds import refund_correction
from tests.factories import (
    FACTORIES,
    AllianceOperatorFactory,
    CardFactory,
    CardProductFactory,
    ChannelFactory,
    MemberBankFactory,
    MerchantFactory,
)
from tests.partitioning import (
    assert_monthly,
    at,
    explain,
    fetch,
    immediately,
    partition_of,
    payment_at,
    referring_keys,
    table_keys,
)

pytestmark = pytest.mark.django_db
_keys = itertools.count()

TABLE = "payments_paymentintent"
# table -> its (payment, payment's time) columns
REFERRERS = {
    "payments_paymentattempt": ("intent_id", "intent_created_at"),
    "payments_refund": ("intent_id", "intent_created_at"),
    "payments_routingdecision": ("intent_id", "intent_created_at"),
    "payments_feesplit": ("payment_id", "payment_created_at"),
    "payments_settlementline": ("payment_id", "payment_created_at"),
    "payments_reconciliationexception": ("payment_id", "payment_created_at"),
    "payments_dispute": ("payment_id", "payment_created_at"),
}


@pytest.fixture
def world(channel_fake: Any) -> dict[str, Any]:
    bank = MemberBankFactory()
    card = CardFactory(product=CardProductFactory(bank=bank))
    merchant = MerchantFactory(sponsor_bank=bank)
    ChannelFactory(acquirer=bank, code="acq-main")
    return {"card": card, "merchant": merchant}


def _pay(world: dict[str, Any], *, when: dt.datetime | None = None, **kwargs: Any) -> PaymentIntent:
    """A payment made by the service (captured at once), as if at `when`."""
    with mock.patch("django.utils.timezone.now", return_value=when or at(2026, 3, 10)):
        return services.payment_create(
            merchant=world["merchant"],
            cardholder=world["card"].cardholder,
            card=world["card"],
            amount=1_000,
            currency="CNY",
            idempotency_key=f"k{next(_keys)}",
            confirm=True,
            **kwargs,
        )


def test_a_payment_made_by_the_services_has_a_timed_id_of_its_created_at(world: dict[str, Any]) -> None:
    when = at(2026, 3, 10) + dt.timedelta(microseconds=123_456)
    payment = _pay(world, when=when)
    payment.refresh_from_db()
    assert payment.created_at == when
    made = public_id_time(payment.public_id, "pay")
    assert made is not None
    assert made <= payment.created_at < made + MILLISECOND


def test_a_lookup_by_public_id_reads_its_millisecond_and_old_ids_still_resolve(world: dict[str, Any]) -> None:
    payment = _pay(world)
    merchant = world["merchant"]
    with CaptureQueriesContext(connection) as queries:
        assert payment_get(merchant=merchant, livemode=True, payment_id=payment.public_id).pk == payment.pk
        assert payment_load(payment.public_id, merchant, True).pk == payment.pk  # the services' lookup
    assert all('"created_at" >=' in query["sql"] for query in queries.captured_queries)
    # Bounded to the id's millisecond: the same row dated otherwise (as the demo dates its history back) is not
    # there, and is found by a second read of every month.
    PaymentIntent.objects.filter(pk=payment.pk).update(created_at=payment.created_at + dt.timedelta(seconds=1))
    with CaptureQueriesContext(connection) as queries:
        assert payment_get(merchant=merchant, livemode=True, payment_id=payment.public_id).pk == payment.pk
    assert ['"created_at" >=' in query["sql"] for query in queries.captured_queries] == [True, False]
    with pytest.raises(NotFound):
        payment_get(merchant=world["merchant"], livemode=False, payment_id=payment.public_id)
    # An id made before payments had timed ids (24 random characters) holds no time and is found by itself.
    PaymentIntent.objects.filter(pk=payment.pk).update(public_id="pay_" + "x" * 24)
    assert payment_get(merchant=merchant, livemode=True, payment_id="pay_" + "x" * 24).pk == payment.pk


def _months(year: int) -> None:
    partitions_create(TABLE, dt.date(year, 1, 1), 3)


def test_the_migration_made_a_partitioned_table_whose_keys_hold_the_payments_time() -> None:
    assert PARTITIONED[TABLE] == "created_at"
    assert_monthly(TABLE, "created_at")
    assert table_keys(TABLE) == {"PRIMARY KEY (id, created_at)", "UNIQUE (public_id, created_at)"}
    # Every referrer's key is composite and follows a re-dated payment; no other key refers to payments.
    referring = referring_keys(TABLE)
    assert referring == [
        (
            table,
            f"FOREIGN KEY ({column}, {time}) REFERENCES {TABLE}(id, created_at) ON UPDATE CASCADE"
            " DEFERRABLE INITIALLY DEFERRED",
        )
        for table, (column, time) in sorted(REFERRERS.items())
    ]
    # The model keeps `id` and states the rules the keys keep.
    assert PaymentIntent._meta.pk is not None
    assert PaymentIntent._meta.pk.name == "id"
    assert PaymentIntent._meta.get_field("public_id").unique  # type: ignore[union-attr]


def test_a_payment_lands_in_its_month_and_without_one_in_the_default() -> None:
    _months(2020)
    assert partition_of(TABLE, payment_at(at(2020, 2, 29)).pk) == f"{TABLE}_p202002"
    # Asia/Shanghai months: 1 March 00:30 there is still February in UTC, and is March's partition.
    assert partition_of(TABLE, payment_at(dt.datetime(2020, 3, 1, 0, 30, tzinfo=SHANGHAI)).pk) == f"{TABLE}_p202003"
    assert partition_of(TABLE, payment_at(at(2020, 7)).pk) == f"{TABLE}_default"


def test_the_rows_that_name_a_payment_are_refused_with_another_time() -> None:
    payment = payment_at(at(2021, 2))
    wrong = payment.created_at + dt.timedelta(days=31)
    rows = {
        "payments_routingdecision": lambda when: RoutingDecision.objects.create(
            intent=payment, intent_created_at=when, strategy="cheapest"
        ),
        "payments_dispute": lambda when: Dispute.objects.create(
            payment=payment, payment_created_at=when, merchant=payment.merchant, kind="retrieval", amount=0,
            currency="CNY", opened_by="channel", respond_by=dt.date(2021, 3, 1),
        ),
    }  # fmt: skip
    for table, make in rows.items():
        with pytest.raises(IntegrityError, match=f'"{table}_payment_fk"'):
            immediately(lambda make=make: make(wrong))
        assert immediately(lambda make=make: make(payment.created_at)).pk


def test_a_code_pays_for_one_payment_held_by_the_codes_row(world: dict[str, Any]) -> None:
    code = methods.payment_code_generate(cardholder=world["card"].cardholder, card=world["card"])
    paid = services.payment_create(
        merchant=world["merchant"], amount=1_000, currency="CNY", payment_code=code.code, idempotency_key="till",
        confirm=True,
    )  # fmt: skip
    code.refresh_from_db()
    assert code.used_by_id == paid.pk
    # A second payment naming the code, written past the service, is refused by the database: not the code's.
    with pytest.raises(IntegrityError, match="payments_paymentintent_payment_code_fk"):
        immediately(lambda: FACTORIES["payments.paymentintent"](payment_code=code))
    # Nor can the code be made to record another payment while the first names it.
    other = FACTORIES["payments.paymentintent"]()
    with pytest.raises(IntegrityError, match="payments_paymentintent_payment_code_fk"):
        immediately(lambda: PaymentCode.objects.filter(pk=code.pk).update(used_by=other))
    assert PaymentIntent.objects.filter(payment_code=code).get() == paid


def test_a_redated_payment_takes_the_rows_naming_it_to_its_new_month(world: dict[str, Any]) -> None:
    """As the demo dates its history back: the keys cascade, and the attempts and refunds move partitions."""
    partitions_create("payments_paymentattempt", dt.date(2022, 1, 1), 3)
    partitions_create("payments_refund", dt.date(2022, 1, 1), 3)
    _months(2022)
    payment = _pay(world, when=at(2022, 1, 20))
    with mock.patch("django.utils.timezone.now", return_value=at(2022, 1, 21)):
        refund = refund_correction(payment, 100, reason="test")
    back = at(2022, 3, 5)
    with transaction.atomic():  # its business date with it, as the demo's, within the capture window
        PaymentIntent.objects.filter(pk=payment.pk).update(created_at=back, business_date=back.date())
    assert partition_of(TABLE, payment.pk) == f"{TABLE}_p202203"
    attempt = PaymentAttempt.objects.get(intent=payment)
    assert attempt.intent_created_at == back
    assert partition_of("payments_paymentattempt", attempt.pk) == "payments_paymentattempt_p202203"
    assert Refund.objects.get(pk=refund.pk).intent_created_at == back
    assert partition_of("payments_refund", refund.pk) == "payments_refund_p202203"
    assert RoutingDecision.objects.get(intent=payment).intent_created_at == back


def _single_partition(plan: str, month: str) -> None:
    assert f"{TABLE}_p{month}" in plan, plan
    others = [p.name for p in partitions(TABLE) if p.name != f"{TABLE}_p{month}"]
    assert others
    assert not [name for name in others if name in plan], plan


def _on_the_payment(queries: CaptureQueriesContext, payment: PaymentIntent) -> list[str]:
    """The statements that read, lock or update `payment`'s row (by id or public id)."""
    return [
        query["sql"]
        for query in queries.captured_queries
        if query["sql"].startswith(("SELECT", "UPDATE"))
        and f'"{TABLE}"' in query["sql"].split(" WHERE ")[0]
        and (f'"{TABLE}"."id" = {payment.pk}' in query["sql"] or f"'{payment.public_id}'" in query["sql"])
    ]


@pytest.mark.parametrize("step", ["capture", "refund", "dispute", "cancel"])
def test_the_services_read_lock_and_update_one_payment_in_its_months_partition(
    world: dict[str, Any], step: str
) -> None:
    _months(2024)
    payment = _pay(world, when=at(2024, 2, 10), capture_method="manual")
    merchant, public_id = world["merchant"], payment.public_id
    actions = {
        "capture": lambda: services.payment_capture(merchant=merchant, payment_id=public_id, idempotency_key="c"),
        "refund": lambda: services.refund_create(merchant=merchant, payment_id=public_id, idempotency_key="r",
                                                 amount=100),
        "dispute": lambda: services.dispute_open(payment=payment, kind="chargeback", amount=100, opened_by="channel"),
        "cancel": lambda: services.payment_cancel(merchant=merchant, payment_id=public_id, idempotency_key="x"),
    }  # fmt: skip
    before = {"capture": [], "refund": ["capture"], "dispute": ["capture", "refund"], "cancel": []}[step]
    with mock.patch("django.utils.timezone.now", return_value=at(2024, 2, 11)):
        for earlier in before:
            actions[earlier]()
        with CaptureQueriesContext(connection) as queries:
            actions[step]()
    statements = _on_the_payment(queries, payment)
    assert statements
    for statement in statements:
        _single_partition(explain(statement), "202402")
    payment.refresh_from_db()
    assert payment.status == ("canceled" if step == "cancel" else "succeeded")


def test_the_job_archives_a_month_of_payments_once_nothing_refers_to_it(world: dict[str, Any]) -> None:
    """A month of payments goes after every month that refers to it (attempts, routing decisions, refunds, disputes):
    the job keeps it while a refund may still come and while a dispute is open, then detaches it; the code that paid
    still names its payment, now a row of the archive."""
    for table in PARTITIONED:
        partitions_create(table, dt.date(2042, 1, 1), 1)
    code = methods.payment_code_generate(cardholder=world["card"].cardholder, card=world["card"])
    with mock.patch("django.utils.timezone.now", return_value=at(2042, 1, 10)):
        code.expires_at = at(2042, 1, 10) + dt.timedelta(minutes=1)
        code.save(update_fields=["expires_at"])
        paid = services.payment_create(
            merchant=world["merchant"], amount=1_000, currency="CNY", payment_code=code.code, idempotency_key="jan",
            confirm=True,
        )  # fmt: skip
    with mock.patch("django.utils.timezone.now", return_value=at(2042, 1, 20)):
        refund = refund_correction(paid, 100, reason="test")
    dispute = Dispute.objects.create(
        payment=paid, payment_created_at=paid.created_at, merchant=paid.merchant, kind="retrieval", amount=0,
        currency="CNY", opened_by="channel", respond_by=dt.date(2042, 2, 1),
    )  # fmt: skip
    with connection.cursor() as cursor:  # as if committed before the job: no key checks left pending
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")

    # In August, January's payments may still be refunded and reconciled (254 days after the month ends).
    early = partitions_maintain(today=dt.date(2042, 8, 10), ahead=0, archive_after=3)
    assert f"{TABLE}_p204201: rows of it may be written until 2042-10-13" in early.kept
    # In November they may not, but the dispute is still open: its month stays, and refers to the payments'.
    kept = partitions_maintain(today=dt.date(2042, 11, 10), ahead=0, archive_after=3)
    assert f"{TABLE}_p204201: rows of payments_dispute refer to it" in kept.kept
    assert PaymentIntent.objects.filter(pk=paid.pk).exists()

    Dispute.objects.filter(pk=dispute.pk).update(status=Dispute.Status.WON, closed_at=at(2042, 2, 1))
    done = partitions_maintain(today=dt.date(2042, 11, 10), ahead=0, archive_after=3)
    # Its attempts, routing decision and refund went on the runs before; now the dispute's month, then the payments'.
    before = set(early.archived + kept.archived)
    assert {f"payments_{name}_archive_204201" for name in ("paymentattempt", "routingdecision", "refund")} <= before
    assert done.archived == ["payments_dispute_archive_204201", f"{TABLE}_archive_204201"]
    assert ArchivedMonth.objects.filter(table=TABLE, month=dt.date(2042, 1, 1)).exists()
    assert not PaymentIntent.objects.filter(pk=paid.pk).exists()
    assert not Refund.objects.filter(pk=refund.pk).exists()
    assert fetch(f"SELECT id, payment_code_id FROM {TABLE}_archive_204201") == [(paid.pk, code.pk)]
    code.refresh_from_db()
    assert code.used_by_id == paid.pk  # the code stays, naming its payment's archived row
    # The points statement, which reads archived months of entries, still names the archived payment's merchant.
    assert merchant_names_of_payments([paid.public_id]) == {paid.public_id: world["merchant"].display_name}
    # The merchant asking for it is told its month was archived, not that it never was.
    with pytest.raises(NotFound, match="Payments made in 2042-01 have been archived") as archived:
        payment_get(merchant=world["merchant"], livemode=True, payment_id=paid.public_id)
    assert archived.value.code == "payment_archived"
    # Any other id, and this one asked for by another merchant or in the other mode, is no such payment.
    for merchant, livemode, public_id in (
        (world["merchant"], True, "pay_" + "x" * 24),
        (MerchantFactory(), True, paid.public_id),
        (world["merchant"], False, paid.public_id),
    ):
        with pytest.raises(NotFound, match="No such payment") as unknown:
            payment_get(merchant=merchant, livemode=livemode, payment_id=public_id)
        assert unknown.value.code == "resource_missing"
    # The cardholder is told too: the payment's page says when it was made and that its month was archived, and the
    # statement's last page says where it stops. Another cardholder asking for it finds no such payment.
    page = reverse("payments:statement_payment", args=[paid.public_id])
    with translation.override("en"):
        own = _portal(world["card"].cardholder.user).get(page, HTTP_ACCEPT_LANGUAGE="en")
        statement = _portal(world["card"].cardholder.user).get(reverse("payments:statement"), HTTP_ACCEPT_LANGUAGE="en")
        stranger = _portal(CardFactory().cardholder.user).get(page, HTTP_ACCEPT_LANGUAGE="en")
    assert own.status_code == 404
    assert f"Payment <code>{paid.public_id}</code> was made in 2042-01" in own.content.decode()
    assert "Payments made before 2042-02 have been archived" in statement.content.decode()
    assert stranger.status_code == 404
    assert "2042-01" not in stranger.content.decode()
    # Operators' list of payments says where it stops, and links the archived months.
    operators = _portal(AllianceOperatorFactory()).get(reverse("admin:payments_paymentintent_changelist"))
    note = operators.content.decode().split('class="help archived-note">')[1].split("</p>")[0]
    assert "2042-02" in note
    assert reverse("admin:core_archivedmonth_changelist") in note

    # Searched for by its public id, the list finds no live payment and names the archived month that holds it.
    searched = _portal(AllianceOperatorFactory()).get(
        reverse("admin:payments_paymentintent_changelist"), {"q": paid.public_id}, HTTP_ACCEPT_LANGUAGE="en"
    )
    hits = searched.content.decode().split('class="help archived-hits">')[1].split("</p>")[0]
    assert "an archived month holds it" in hits
    assert ">2042-01</a>" in hits

    # There, the payment is found in its month's archive by its public id, and its refund by the payment's id.
    def found(table: str, term: str) -> list[dict[str, Any]]:
        record = ArchivedMonth.objects.get(table=table, month=dt.date(2042, 1, 1))
        rows = _portal(AllianceOperatorFactory()).get(
            reverse("admin:core_archivedmonth_rows", args=[record.pk]), {"q": term}
        )
        assert rows.status_code == 200
        return [dict(row) for row in rows.context["rows"]]

    (payment_row,) = found(TABLE, paid.public_id)
    assert (payment_row["id"], payment_row["amount"], payment_row["status"]) == (paid.pk, 1_000, "succeeded")
    (refund_row,) = found("payments_refund", str(paid.pk))
    assert (refund_row["id"], refund_row["intent_id"], refund_row["amount"]) == (refund.pk, paid.pk, 100)


def _portal(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client

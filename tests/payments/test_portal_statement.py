"""The cardholder's unified statement (统一账单): every payment and refund on their cards across banks, newest first,
filtered, searched, exported as CSV, each line opening its detail; nobody else's."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import translation

from core.calendar import SHANGHAI
from payments import cardholder_statement, services
from payments.cardholder_statement import Cursor, StatementFilters, statement_page
from payments.models import PaymentIntent, Refund
from tests.factories import (
    PASSWORD,
    CardFactory,
    CardProductFactory,
    ChannelFactory,
    MemberBankFactory,
    MerchantFactory,
    PointsProgramFactory,
    make_cardholder,
    make_promotion,
)

pytestmark = pytest.mark.django_db
_keys = itertools.count()
LAST_MONTH = dt.datetime(2026, 3, 14, 9, 30, tzinfo=SHANGHAI)


def pay(card: Any, merchant: Any, amount: int, **fields: Any) -> PaymentIntent:
    return services.payment_create(
        merchant=merchant,
        cardholder=card.cardholder,
        card=card,
        amount=amount,
        currency="CNY",
        idempotency_key=f"statement-{next(_keys)}",
        confirm=True,
        **fields,
    )


def refund(payment: PaymentIntent, amount: int | None = None) -> Refund:
    return services.refund_create(
        merchant=payment.merchant, payment_id=payment.public_id, amount=amount, idempotency_key=f"r-{next(_keys)}"
    )


@pytest.fixture
def world(channel_fake: Any) -> dict[str, Any]:
    """A cardholder with a card at each of two banks (each with its points programme): a dining payment at the
    noodle house on the first card last March, then a book shop payment with ¥10 off on the second card and a
    partial refund of it, and a payment in test mode; another cardholder's payment at the noodle house."""
    huaxin = MemberBankFactory(code="HXTST", name_zh="华信测试银行", name_en="Huaxin Test Bank")
    jianghai = MemberBankFactory(code="JHTST", name_zh="江海测试银行", name_en="Jianghai Test Bank")
    PointsProgramFactory(bank=huaxin)
    PointsProgramFactory(bank=jianghai)
    holder = make_cardholder()
    first = CardFactory(cardholder=holder, product=CardProductFactory(bank=huaxin), last4="1111")
    second = CardFactory(cardholder=holder, product=CardProductFactory(bank=jianghai), last4="2222")
    noodles = MerchantFactory(display_name="Noodle House", spend_category="dining")
    books = MerchantFactory(display_name="Book Shop", spend_category="online")
    for merchant in (noodles, books):
        ChannelFactory(acquirer=merchant.sponsor_bank)
        ChannelFactory(acquirer=merchant.sponsor_bank, code=f"sandbox-{merchant.pk}", sandbox=True)
    make_promotion(merchant=books, name="Spring ¥10 off")
    dinner = pay(first, noodles, 8_800, merchant_reference="TABLE-7")
    PaymentIntent.objects.filter(pk=dinner.pk).update(created_at=LAST_MONTH, business_date=LAST_MONTH.date())
    dinner.refresh_from_db()  # the services find a payment in its month: by its time as it is now
    novel = pay(second, books, 12_900)
    returned = refund(novel, 2_000)
    sandbox = pay(first, books, 500, livemode=False)
    stranger = pay(CardFactory(product=CardProductFactory(bank=huaxin)), noodles, 3_300)
    client = Client()
    assert client.login(username=holder.user.username, password=PASSWORD)
    return {
        "holder": holder, "first": first, "second": second, "noodles": noodles, "books": books, "huaxin": huaxin,
        "jianghai": jianghai, "dinner": dinner, "novel": novel, "refund": returned, "sandbox": sandbox,
        "stranger": stranger, "client": client,
    }  # fmt: skip


def lines(world: dict[str, Any], **params: Any) -> list[cardholder_statement.StatementLine]:
    response = world["client"].get(reverse("payments:statement"), params)
    assert response.status_code == 200
    return list(response.context["page"].lines)


def test_every_payment_and_refund_of_the_cardholder_newest_first_and_nobody_elses(world: dict[str, Any]) -> None:
    with translation.override("en"):
        response = world["client"].get(reverse("payments:statement"), HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    page = response.context["page"]
    assert [(line.kind, line.payment, line.merchant) for line in page.lines] == [
        ("refund", world["novel"].public_id, "Book Shop"),
        ("payment", world["novel"].public_id, "Book Shop"),
        ("payment", world["dinner"].public_id, "Noodle House"),
    ]  # the test-mode payment and the other cardholder's are not on it
    assert page.next_after is None
    back, novel, dinner = page.lines
    assert (back.amount_display, back.points, back.refund) == (
        "-20.00 CNY",
        world["refund"].points_reversed,
        world["refund"].public_id,
    )
    assert world["refund"].points_reversed == 20  # floor(119 × 2,000 / 11,900)
    assert (novel.amount, novel.discount, novel.promotion_names, novel.points) == (
        11_900,
        1_000,
        ["Spring ¥10 off"],
        119,
    )
    assert (dinner.amount, dinner.points, dinner.status, dinner.category) == (8_800, 176, "succeeded", "dining")
    html = response.content.decode()
    assert "Jianghai Test Bank •••• 2222" in html
    assert "Huaxin Test Bank •••• 1111" in html
    assert "2026-03-14 09:30" in html  # Beijing time
    assert "Spring ¥10 off" in html
    assert "-20.00 CNY" in html
    assert "+176" in html
    assert reverse("payments:statement_payment", args=[world["dinner"].public_id]) in html
    chinese = world["client"].get(reverse("payments:statement"))
    assert "江海测试银行 •••• 2222" in chinese.content.decode()


def test_filters_by_card_bank_month_and_category(world: dict[str, Any]) -> None:
    novel, dinner = world["novel"].public_id, world["dinner"].public_id
    by_card = lines(world, card=f"card:{world['first'].pk}")
    assert [line.payment for line in by_card] == [dinner]
    by_bank = lines(world, bank=str(world["jianghai"].pk))
    assert [(line.kind, line.payment) for line in by_bank] == [("refund", novel), ("payment", novel)]
    assert [line.payment for line in lines(world, month="2026-03")] == [dinner]
    this_month = dt.datetime.now(SHANGHAI).strftime("%Y-%m")
    assert {line.payment for line in lines(world, month=this_month)} == {novel}
    assert [line.kind for line in lines(world, category="online")] == ["refund", "payment"]
    assert lines(world, category="travel") == []
    assert lines(world, card=f"card:{world['first'].pk}", category="online") == []


def test_search_finds_by_merchant_name_payment_id_reference_and_refund_id(world: dict[str, Any]) -> None:
    novel, dinner = world["novel"].public_id, world["dinner"].public_id
    assert [line.payment for line in lines(world, q="noodle")] == [dinner]
    assert [line.payment for line in lines(world, q=dinner)] == [dinner]
    assert [line.payment for line in lines(world, q="TABLE-7")] == [dinner]
    assert [(line.kind, line.payment) for line in lines(world, q=world["refund"].public_id)] == [("refund", novel)]
    assert lines(world, q=world["stranger"].public_id) == []  # another cardholder's payment is not found
    assert lines(world, q="no such shop") == []


def test_filters_that_do_not_parse_answer_400_saying_why(world: dict[str, Any]) -> None:
    client = world["client"]
    with translation.override("en"):
        bad_month = client.get(reverse("payments:statement"), {"month": "2026-13"}, HTTP_ACCEPT_LANGUAGE="en")
        assert bad_month.status_code == 400
        assert "YYYY-MM" in bad_month.content.decode()
        assert bad_month.context["page"] is None
        foreign = client.get(reverse("payments:statement"), {"card": f"card:{world['stranger'].card_id}"})
        assert foreign.status_code == 400  # not one of the cardholder's cards: not a choice
        assert "card" in foreign.context["form"].errors
        cursor = client.get(reverse("payments:statement"), {"after": "yesterday"}, HTTP_ACCEPT_LANGUAGE="en")
        assert cursor.status_code == 400
        assert "not valid" in cursor.content.decode()
        assert client.get(reverse("payments:statement_csv"), {"month": "March"}).status_code == 400


def test_pages_follow_one_another_through_ties_and_keep_the_filters(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    more = [pay(world["second"], world["books"], 1_000 + n) for n in range(3)]
    same = world["novel"].created_at  # a payment and a refund at the very same moment: ordered by kind, then id
    PaymentIntent.objects.filter(pk__in=[p.pk for p in more]).update(created_at=same)
    Refund.objects.filter(pk=world["refund"].pk).update(created_at=same)
    holder = world["holder"]
    everything = statement_page(cardholder=holder, filters=StatementFilters(), limit=100).lines
    seen, after = [], None
    while True:
        page = statement_page(cardholder=holder, filters=StatementFilters(), after=after, limit=2)
        seen += page.lines
        if page.next_after is None:
            break
        after = Cursor.parse(page.next_after)
    assert [(line.kind, line.id) for line in seen] == [(line.kind, line.id) for line in everything]
    assert len(seen) == 6
    assert [line.kind for line in seen[:1]] == ["refund"]  # at one moment a refund comes first
    assert [line.id for line in seen[1:5]] == sorted((p.pk for p in [*more, world["novel"]]), reverse=True)
    monkeypatch.setattr(cardholder_statement, "PAGE_SIZE", 2)
    first = world["client"].get(reverse("payments:statement"), {"bank": str(world["jianghai"].pk)})
    html = first.content.decode()
    assert first.context["page"].next_after is not None
    assert f"bank={world['jianghai'].pk}&amp;after=" in html  # the next page keeps the filter
    second = world["client"].get(
        reverse("payments:statement"), {"bank": str(world["jianghai"].pk), "after": first.context["page"].next_after}
    )
    assert second.status_code == 200
    assert not {line.id for line in second.context["page"].lines} & {line.id for line in first.context["page"].lines}


def test_csv_export_streams_the_filtered_statement(world: dict[str, Any]) -> None:
    weird = MerchantFactory(
        display_name="=HYPERLINK(1)", spend_category="online", sponsor_bank=world["books"].sponsor_bank
    )
    pay(world["second"], weird, 700)
    with translation.override("en"):
        response = world["client"].get(
            reverse("payments:statement_csv"), {"category": "online"}, HTTP_ACCEPT_LANGUAGE="en"
        )
        assert response.status_code == 200
        assert response.streaming
        assert response["Content-Type"] == "text/csv; charset=utf-8"
        assert response["Content-Disposition"].startswith('attachment; filename="mengka-statement-')
        rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:3] == ["Time", "Type", "Payment"]
    body = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert [(row["Type"], row["Merchant"], row["Amount"]) for row in body] == [
        ("Payment", "'=HYPERLINK(1)", "7.00"),  # never a formula in a spreadsheet
        ("Refund", "Book Shop", "-20.00"),
        ("Payment", "Book Shop", "119.00"),
    ]
    novel = body[2]
    assert (novel["Bank"], novel["Card or account"], novel["Discount"]) == ("Jianghai Test Bank", "•••• 2222", "10.00")
    assert (novel["Promotions"], novel["Points earned or reversed"], novel["Status"]) == (
        "Spring ¥10 off",
        "119",
        "succeeded",
    )
    assert body[1]["Points earned or reversed"] == "-20"
    assert novel["Time"] == world["novel"].created_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
    assert world["dinner"].public_id not in str(body)  # dining: filtered out


def test_a_line_opens_its_payment_with_refunds_points_promotions_and_history(world: dict[str, Any]) -> None:
    novel = world["novel"]
    with translation.override("en"):
        response = world["client"].get(
            reverse("payments:statement_payment", args=[novel.public_id]), HTTP_ACCEPT_LANGUAGE="en"
        )
    assert response.status_code == 200
    detail = response.context["detail"]
    assert [r.public_id for r in detail.refunds] == [world["refund"].public_id]
    assert [(m.kind, m.amount) for m in detail.movements] == [("earn", 119), ("reversal", -20)]
    assert [line["name"] for line in detail.promotions] == ["Spring ¥10 off"]
    assert [change.type for change in detail.history] == ["payment.created", "payment.succeeded", "refund.succeeded"]
    html = response.content.decode()
    for shown in ("Book Shop", "129.00 CNY", "10.00 CNY", "119.00 CNY", "20.00 CNY", "Jianghai Test Bank •••• 2222"):
        assert shown in html, shown
    assert "refunded" in html
    assert "paid" in html


def test_anyone_elses_payment_and_a_test_mode_one_are_not_found(world: dict[str, Any]) -> None:
    client = world["client"]
    assert client.get(reverse("payments:statement_payment", args=[world["stranger"].public_id])).status_code == 404
    assert client.get(reverse("payments:statement_payment", args=[world["sandbox"].public_id])).status_code == 404
    assert client.get(reverse("payments:statement_payment", args=["pay_nothing"])).status_code == 404
    anonymous = Client().get(reverse("payments:statement"))
    assert anonymous.status_code == 302
    assert "/accounts/login/" in anonymous["Location"]


def test_the_page_works_without_javascript_and_the_nav_links_it(world: dict[str, Any]) -> None:
    html = world["client"].get(reverse("payments:statement")).content.decode()
    assert '<form method="get" action="/portal/pay/statement/"' in html
    assert 'formaction="/portal/pay/statement/export.csv"' in html  # the export is the same form, another button
    assert "<script" not in html
    dashboard = world["client"].get(reverse("members:dashboard")).content.decode()
    assert 'href="/portal/pay/statement/"' in dashboard


def test_a_linked_balance_payment_is_on_it_and_filtered_by_its_account(
    world: dict[str, Any], channel_fake: Any
) -> None:
    from payments.routing import config_changed
    from tests.factories import make_linked_account

    account = make_linked_account(cardholder=world["holder"])
    ChannelFactory(acquirer=account.bank, kind="wallet")
    config_changed()  # the routing configuration, read by the payments before, knows the new channel
    channel_fake.accounts[account.reference] = 100_000
    wallet = services.payment_create(
        merchant=world["noodles"], cardholder=world["holder"], linked_account=account, amount=2_500, currency="CNY",
        idempotency_key=f"wallet-{next(_keys)}", confirm=True,
    )  # fmt: skip
    assert wallet.status == "succeeded", (wallet.failure_code, wallet.failure_message)
    shown = lines(world, card=f"account:{account.pk}")
    assert [(line.payment, line.source, line.bank) for line in shown] == [
        (wallet.public_id, account.masked_number, account.bank.name_zh)
    ]
    assert wallet.public_id in {line.payment for line in lines(world, bank=str(account.bank_id))}


def test_a_disputed_payment_shows_its_dispute_on_its_line_and_its_page(world: dict[str, Any]) -> None:
    from payments.models import Dispute

    dinner, novel = world["dinner"], world["novel"]
    services.dispute_open(payment=dinner, kind="chargeback", amount=3_000, opened_by=Dispute.OpenedBy.CHANNEL)
    lost = services.dispute_open(payment=novel, kind="retrieval", opened_by=Dispute.OpenedBy.CHANNEL)
    services.dispute_outcome_record(dispute_id=lost.pk, outcome="lost")
    with translation.override("en"):
        response = world["client"].get(reverse("payments:statement"), HTTP_ACCEPT_LANGUAGE="en")
    rows = {(line.payment, line.kind): [d.status for d in found] for line, found in response.context["page"].rows}
    assert rows == {
        (novel.public_id, "refund"): [],  # the refund line: its payment's disputes are on the payment's line
        (novel.public_id, "payment"): ["lost"],
        (dinner.public_id, "payment"): ["open"],
    }
    html = response.content.decode()
    assert html.count('class="dispute-state') == 2
    assert "Under review: chargeback (拒付), 30.00 CNY." in html
    with translation.override("en"):
        page = world["client"].get(
            reverse("payments:statement_payment", args=[novel.public_id]), HTTP_ACCEPT_LANGUAGE="en"
        )
    assert [d.status for d in page.context["detail"].disputes] == ["lost"]
    assert "retrieval request (调单): lost" in page.content.decode()

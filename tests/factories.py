"""factory-boy factories, and the registry the admin-scoping walk uses: every admin-registered model needs one."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from typing import Any

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from core.calendar import SHANGHAI
from core.models import ArchivedMonth, AuditLog, CalendarDay, IdempotencyRecord, JobRun
from core.scoping import ALLIANCE_OPERATORS
from members.models import BankOperator, MemberBank

PASSWORD = "pw-for-tests-1"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")

    @factory.post_generation
    def password(self, create: bool, extracted: Any, **kwargs: Any) -> None:
        self.set_password(extracted or PASSWORD)
        if create:
            self.save(update_fields=["password"])


class StaffFactory(UserFactory):
    is_staff = True


class AllianceOperatorFactory(StaffFactory):
    class Meta:
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"alliance{n}")

    @factory.post_generation
    def groups(self, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create:
            self.groups.add(Group.objects.get(name=ALLIANCE_OPERATORS))


class GroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Group

    name = factory.Sequence(lambda n: f"group {n}")


class MemberBankFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MemberBank

    code = factory.Sequence(lambda n: f"B{n:03d}")
    name_zh = factory.Sequence(lambda n: f"测试银行{n}")
    name_en = factory.Sequence(lambda n: f"Test Bank {n}")
    kind = MemberBank.Kind.JOINT_STOCK
    issuing_licence = True
    acquiring_licence = True
    joined_on = dt.date(2025, 1, 1)


class BankOperatorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BankOperator

    user = factory.SubFactory(StaffFactory)
    bank = factory.SubFactory(MemberBankFactory)
    role = BankOperator.Role.OPERATOR


def bank_operator(bank: Any, **user_fields: Any) -> Any:
    """A staff user in the "Bank operators" group who operates for `bank`."""
    from django.contrib.auth.models import Group

    from core.scoping import BANK_OPERATORS

    user = StaffFactory(**user_fields)
    user.groups.add(Group.objects.get(name=BANK_OPERATORS))
    BankOperatorFactory(user=user, bank=bank)
    return user


def card_agreement(card: Any, merchant: Any, *, per_payment: int = 50_000, per_month: int = 500_000) -> Any:
    """The card's holder grants `merchant` an agreement on `card`: a `GrantedAgreement` (agreement and token)."""
    from payments.methods import agreement_grant

    return agreement_grant(
        cardholder=card.cardholder,
        merchant=merchant,
        card=card,
        limit_per_payment=per_payment,
        limit_per_month=per_month,
    )


class AuditLogFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AuditLog

    actor_label = "system"
    action = "test.action"
    bank_id = factory.LazyFunction(lambda: MemberBankFactory().pk)


class JobRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = JobRun

    job = factory.Iterator(["payments.reconcile", "rewards.lots_expire"])  # shared jobs: every bank watches them
    status = JobRun.Status.SUCCEEDED


class IdempotencyRecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = IdempotencyRecord

    scope = "api:1"
    key = factory.Sequence(lambda n: f"key-{n}")
    operation = "payment.create"
    fingerprint = "0" * 64


class ArchivedMonthFactory(factory.django.DjangoModelFactory):
    """A record only: no table is detached."""

    class Meta:
        model = ArchivedMonth

    table = "merchants_event"
    month = factory.Sequence(lambda n: dt.date(2000 + n // 12, n % 12 + 1, 1))
    archive_table = factory.LazyAttribute(lambda o: f"{o.table}_archive_{o.month:%Y%m}")


class CalendarDayFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CalendarDay

    date = factory.Sequence(lambda n: dt.date(2040, 1, 1) + dt.timedelta(days=n))
    kind = CalendarDay.Kind.HOLIDAY
    name = "test holiday"


def _periodic_task() -> Any:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    interval = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.MINUTES)
    return PeriodicTask.objects.create(
        name=f"test task {PeriodicTask.objects.count()}", task="core.ping", interval=interval
    )


def _model(label: str) -> Any:
    from django.apps import apps

    return apps.get_model(label)


class PointsProgramFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "members.PointsProgram"

    bank = factory.SubFactory(MemberBankFactory)
    unit_code = factory.Sequence(lambda n: f"PTS{n:03d}")
    name = factory.Sequence(lambda n: f"Points {n}")
    point_value_cny = Decimal("0.005000")
    expiry_policy = "end_of_year"
    expiry_period = 2


class CardholderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "members.Cardholder"

    user = factory.SubFactory(UserFactory)
    display_name = factory.Sequence(lambda n: f"持卡人{n}")
    phone_encrypted = "not-encrypted-in-tests"
    phone_hash = factory.Sequence(lambda n: f"{n:064d}")
    phone_last4 = factory.Sequence(lambda n: f"{n % 10000:04d}")


def _ledger_points_account() -> Any:
    """A cardholder's wallet in a new bank's program, with some points earned."""
    from rewards.services import points_earn, wallet_account

    program = PointsProgramFactory()
    holder = CardholderFactory()
    points_earn(cardholder_id=holder.pk, program=program, amount=500, idempotency_key=f"factory:{program.pk}")
    return wallet_account(holder.pk, program)


def _ledger_row(label: str) -> Any:
    account = _ledger_points_account()
    if label == "rewards.account":
        return account
    from rewards import models as ledger

    if label == "rewards.ledgertransaction":
        return ledger.LedgerTransaction.objects.filter(entries__account=account).first()
    if label == "rewards.entry":
        return ledger.Entry.objects.filter(account=account).first()
    if label == "rewards.lot":
        return ledger.Lot.objects.filter(account=account).first()
    if label == "rewards.hold":
        from rewards.services import hold_create

        return hold_create(
            cardholder_id=account.owner_id, program=account.program, amount=10, idempotency_key=f"hold:{account.pk}"
        )
    if label == "core.approvalrequest":
        from rewards.services import adjustment_request

        card_at(account.owner_id, account.program.bank)
        return adjustment_request(
            cardholder_id=account.owner_id,
            program=account.program,
            amount=5,
            reason="goodwill",
            requested_by=StaffFactory(),
        )
    if label == "rewards.seal":
        from rewards.sealing import seal_pending

        seal_pending()
        return ledger.Seal.objects.order_by("-id").first()
    raise KeyError(label)


# Model label -> a callable that creates one row. Each call must create a row under a *new* member bank where the
# model is bank-scoped, so the walk can check that one bank's operator sees it and another's does not.
FACTORIES: dict[str, Any] = {
    "auth.user": UserFactory,
    "auth.group": GroupFactory,
    "core.auditlog": AuditLogFactory,
    "core.jobrun": JobRunFactory,
    "core.idempotencyrecord": IdempotencyRecordFactory,
    "core.calendarday": CalendarDayFactory,
    "core.archivedmonth": ArchivedMonthFactory,
    "core.approvalrequest": lambda: _ledger_row("core.approvalrequest"),
    "members.memberbank": MemberBankFactory,
    "members.bankoperator": BankOperatorFactory,
    "django_celery_beat.periodictask": _periodic_task,
    "rewards.account": lambda: _ledger_row("rewards.account"),
    "rewards.ledgertransaction": lambda: _ledger_row("rewards.ledgertransaction"),
    "rewards.entry": lambda: _ledger_row("rewards.entry"),
    "rewards.lot": lambda: _ledger_row("rewards.lot"),
    "rewards.hold": lambda: _ledger_row("rewards.hold"),
    "rewards.seal": lambda: _ledger_row("rewards.seal"),
    "django_celery_beat.intervalschedule": lambda: _model("django_celery_beat.intervalschedule").objects.create(
        every=7, period="minutes"
    ),
    "django_celery_beat.crontabschedule": lambda: _model("django_celery_beat.crontabschedule").objects.create(
        minute="7", hour="7"
    ),
    "django_celery_beat.clockedschedule": lambda: _model("django_celery_beat.clockedschedule").objects.create(
        clocked_time=dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    ),
    "django_celery_beat.solarschedule": lambda: _model("django_celery_beat.solarschedule").objects.create(
        event="sunrise", latitude=_model("django_celery_beat.solarschedule").objects.count(), longitude=121.47
    ),
}


# --- members -------------------------------------------------------------------------------------------------------


def _luhn_complete(body: str) -> str:
    """Appends the Luhn check digit to `body`."""
    from core.logging import luhn_valid

    return next(body + d for d in "0123456789" if luhn_valid(body + d))


class CardProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "members.CardProduct"

    bank = factory.SubFactory(MemberBankFactory)
    code = factory.Sequence(lambda n: f"P{n:04d}")
    name = factory.Sequence(lambda n: f"Card product {n}")
    kind = "credit"
    earning_rates = factory.LazyFunction(lambda: {"dining": "2", "other": "1"})


class BinRangeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "members.BinRange"

    product = factory.SubFactory(CardProductFactory)
    bank = factory.SelfAttribute("product.bank")
    prefix = factory.Sequence(lambda n: f"{622000 + n:06d}")
    card_length = 16


_holder_serial = itertools.count(1)


def make_cardholder(**overrides: Any) -> Any:
    """A cardholder registered through the service (phone and ID encrypted and hashed)."""
    from members.services import cardholder_register

    n = next(_holder_serial)
    fields: dict[str, Any] = {
        "username": f"holder{n}",
        "display_name": f"持卡人 {n}",
        "phone": f"139{n:08d}",
        "password": PASSWORD,
    }
    fields.update(overrides)
    return cardholder_register(**fields)


def card_number_for(bin_range: Any, serial: int) -> str:
    """A Luhn-valid number inside `bin_range` (used at bind time only; never stored)."""
    body = bin_range.prefix + f"{serial:0{bin_range.card_length - len(bin_range.prefix) - 1}d}"
    return _luhn_complete(body)


def make_card(cardholder: Any = None, bin_range: Any = None, status: str = "active") -> Any:
    """A bound card: the one-by-one path through the sandbox issuer, then the wanted status."""
    from members.issuers import SandboxIssuerVerifier
    from members.models import Card
    from members.services import binding_verify, card_bind_start, card_freeze

    cardholder = cardholder or make_cardholder()
    bin_range = bin_range or BinRangeFactory()
    verifier = SandboxIssuerVerifier()
    serial = Card.objects.count() + 1
    challenge = card_bind_start(
        cardholder=cardholder,
        card_number=card_number_for(bin_range, serial),
        expiry_month=12,
        expiry_year=2031,
        verifier=verifier,
    )
    code = verifier.code_for(cardholder.phone_hash, challenge.issuer_reference)
    card = binding_verify(cardholder=cardholder, challenge_id=challenge.pk, code=code, verifier=verifier)
    if status == "frozen":
        card = card_freeze(card=card, actor=None)
    return card


def make_linked_account(cardholder: Any = None, bank: Any = None) -> Any:
    from members.issuers import SandboxIssuerVerifier
    from members.models import LinkedAccount
    from members.services import binding_verify, linked_account_bind_start

    cardholder = cardholder or make_cardholder()
    bank = bank or MemberBankFactory()
    verifier = SandboxIssuerVerifier()
    challenge = linked_account_bind_start(
        cardholder=cardholder,
        bank=bank,
        kind="wallet",
        account_number=f"W{LinkedAccount.objects.count() + 1:011d}",
        verifier=verifier,
    )
    code = verifier.code_for(cardholder.phone_hash, challenge.issuer_reference)
    return binding_verify(cardholder=cardholder, challenge_id=challenge.pk, code=code, verifier=verifier)


def make_consent_text(purpose: str = "share_holdings") -> Any:
    from members.services import consent_text_publish

    return consent_text_publish(purpose=purpose, text_zh="同意条款", text_en="Consent text")


def _cardholder_at_new_bank() -> Any:
    return make_card().cardholder


def _consent_at_new_bank() -> Any:
    from members.models import ConsentText
    from members.services import consent_grant

    if not ConsentText.objects.filter(purpose="share_holdings").exists():
        make_consent_text()
    return consent_grant(cardholder=_cardholder_at_new_bank(), purpose="share_holdings")


def _consent_event_at_new_bank() -> Any:
    from members.models import ConsentEvent

    consent = _consent_at_new_bank()
    return ConsentEvent.objects.filter(cardholder_id=consent.cardholder_id).latest("id")


def _challenge_at_new_bank() -> Any:
    return make_card().challenges.get()


FACTORIES.update(
    {
        "members.pointsprogram": PointsProgramFactory,
        "members.cardproduct": CardProductFactory,
        "members.binrange": BinRangeFactory,
        "members.cardholder": _cardholder_at_new_bank,
        "members.card": make_card,
        "members.linkedaccount": make_linked_account,
        "members.bindingchallenge": _challenge_at_new_bank,
        "members.consenttext": lambda: make_consent_text(),
        "members.consent": _consent_at_new_bank,
        "members.consentevent": _consent_event_at_new_bank,
    }
)


# --- fast model-level cards (for payments tests), merchants, payments ------------------------------------------
from members.models import Card  # noqa: E402
from merchants.models import Merchant  # noqa: E402
from payments.models import Channel, PaymentAttempt, PaymentIntent, Refund  # noqa: E402


def card_at(cardholder: Any, bank: Any, **fields: Any) -> Any:
    """A card the cardholder (or cardholder id) holds at `bank`."""
    from members.models import Cardholder

    holder = cardholder if isinstance(cardholder, Cardholder) else Cardholder.objects.get(pk=cardholder)
    return CardFactory(cardholder=holder, product=CardProductFactory(bank=bank), **fields)


class CardFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Card

    cardholder = factory.SubFactory(CardholderFactory)
    product = factory.SubFactory(CardProductFactory)
    bank = factory.SelfAttribute("product.bank")
    token = factory.Sequence(lambda n: f"card_test_{n:08d}")
    bin = "62260000"
    last4 = factory.Sequence(lambda n: f"{n % 10000:04d}")
    fingerprint = factory.Sequence(lambda n: f"fp{n:062d}")
    expiry_month = 12
    expiry_year = 2099
    status = "active"


class MerchantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Merchant

    code = factory.Sequence(lambda n: f"M{n:05d}")
    legal_name = factory.Sequence(lambda n: f"Merchant {n} Co., Ltd.")
    display_name = factory.Sequence(lambda n: f"Merchant {n}")
    sponsor_bank = factory.SubFactory(MemberBankFactory)
    spend_category = "dining"


class ChannelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Channel

    code = factory.Sequence(lambda n: f"chan-{n}")
    name = factory.Sequence(lambda n: f"Channel {n}")
    acquirer = factory.SubFactory(MemberBankFactory)
    connector = "inprocess"
    methods = factory.LazyFunction(lambda: ["card", "payment_code", "agreement", "balance"])
    currencies = factory.LazyFunction(lambda: ["CNY", "HKD", "USD", "EUR", "JPY"])
    fee_percent = "0.6000"


def _payment(**kwargs: Any) -> PaymentIntent:
    """A captured payment whose issuer, acquirer and merchant sponsor are one new bank. Given a business date and no
    time, it is made at noon that day (the database holds a business date to the capture window from the creation)."""
    if kwargs.get("business_date") and "created_at" not in kwargs:
        day = kwargs["business_date"]
        today = timezone.localdate()
        if not today <= day <= today + dt.timedelta(days=7):
            kwargs["created_at"] = dt.datetime(day.year, day.month, day.day, 12, tzinfo=SHANGHAI)
    bank = MemberBankFactory()
    card = CardFactory(product=CardProductFactory(bank=bank))
    return PaymentIntent.objects.create(
        merchant=MerchantFactory(sponsor_bank=bank),
        cardholder=card.cardholder,
        card=card,
        issuer=bank,
        acquirer=bank,
        channel=ChannelFactory(acquirer=bank),
        amount=1000,
        amount_captured=1000,
        status="succeeded",
        **kwargs,
    )


def _attempt() -> PaymentAttempt:
    payment = _payment()
    assert payment.channel is not None
    return PaymentAttempt.objects.create(
        intent=payment,
        sequence=1,
        channel=payment.channel,
        reference=f"{payment.public_id}-1",
        intent_created_at=payment.created_at,
        amount=1000,
        currency="CNY",
        status="captured",
    )


def _refund() -> Refund:
    payment = _payment(amount_refund_reserved=100, amount_refunded=100)
    return Refund.objects.create(
        intent=payment,
        intent_created_at=payment.created_at,
        merchant_id=payment.merchant_id,
        amount=100,
        reference=f"{payment.public_id}-r1",
        status="succeeded",
    )


def _journal_cursor() -> Any:
    from payments.models import JournalCursor

    return JournalCursor.objects.create(channel=ChannelFactory(acquirer=MemberBankFactory()), position=7)


def _dispute_feed_cursor() -> Any:
    from payments.models import DisputeFeedCursor

    return DisputeFeedCursor.objects.create(channel=ChannelFactory(acquirer=MemberBankFactory()))


def _unmatched_charge() -> Any:
    from payments.models import UnmatchedCharge

    channel = ChannelFactory(acquirer=MemberBankFactory())
    return UnmatchedCharge.objects.create(channel=channel, reference=f"ghost-{channel.pk}", reason="inquiry unanswered")


FACTORIES.update(
    {
        "merchants.merchant": MerchantFactory,
        "payments.channel": ChannelFactory,
        "payments.paymentintent": _payment,
        "payments.paymentattempt": _attempt,
        "payments.refund": _refund,
        "payments.journalcursor": _journal_cursor,
        "payments.disputefeedcursor": _dispute_feed_cursor,
        "payments.unmatchedcharge": _unmatched_charge,
    }
)


def _routing_rule() -> Any:
    from payments.models import RoutingRule

    return RoutingRule.objects.create(name=f"rule {RoutingRule.objects.count()}", strategy="cheapest")


def _error_policy() -> Any:
    from payments.models import ChannelErrorPolicy

    return ChannelErrorPolicy.objects.create(error_code=f"E{ChannelErrorPolicy.objects.count()}", retry=False)


FACTORIES.update({"payments.routingrule": _routing_rule, "payments.channelerrorpolicy": _error_policy})


def _fee_schedule() -> Any:
    from payments.models import FeeSchedule

    return FeeSchedule.objects.create(
        merchant=MerchantFactory(),
        mdr_percent="0.6",
        issuer_share="60",
        acquirer_share="25",
        channel_share="10",
        alliance_share="5",
        effective_from=timezone.now(),
    )


def _fee_split() -> Any:
    from payments.models import FeeSplit

    payment = _payment()
    return FeeSplit.objects.create(
        payment=payment, payment_created_at=payment.created_at, schedule=_fee_schedule(), event="capture",
        party="issuer", bank=payment.issuer, amount=3600,
    )  # fmt: skip


FACTORIES.update({"payments.feeschedule": _fee_schedule, "payments.feesplit": _fee_split})


def _risk_rule() -> Any:
    from payments.models import RiskRule

    return RiskRule.objects.create(name=f"risk rule {RiskRule.objects.count()}", kind="amount", threshold=100_000)


def _risk_block() -> Any:
    from payments.models import RiskBlock

    return RiskBlock.objects.create(kind="device", value=f"device-{RiskBlock.objects.count()}")


def _risk_review() -> Any:
    """A payment held for risk review, under one new bank."""
    from payments.models import RiskReview

    payment = _payment()
    PaymentIntent.objects.filter(pk=payment.pk).update(
        status="requires_capture", amount_captured=0, amount_capturable=1000, risk_review=True, risk_outcome="review"
    )
    return RiskReview.objects.get(pk=payment.pk)


FACTORIES.update(
    {"payments.riskrule": _risk_rule, "payments.riskblock": _risk_block, "payments.riskreview": _risk_review}
)


def _payment_code() -> Any:
    from payments.models import PaymentCode

    card = CardFactory(product=CardProductFactory(bank=MemberBankFactory()))
    return PaymentCode.objects.create(
        cardholder=card.cardholder, card=card, expires_at=timezone.now() + dt.timedelta(seconds=60)
    )


def _agreement() -> Any:
    from payments.models import Agreement, agreement_token_hash, agreement_token_hint, agreement_token_new

    card = CardFactory(product=CardProductFactory(bank=MemberBankFactory()))
    token = agreement_token_new()
    return Agreement.objects.create(
        token_hash=agreement_token_hash(token),
        token_hint=agreement_token_hint(token),
        cardholder=card.cardholder,
        merchant=MerchantFactory(sponsor_bank=card.bank),
        card=card,
        limit_per_payment=10_000,
        limit_per_month=100_000,
    )


def _agreement_request() -> Any:
    from payments.models import AgreementRequest

    return AgreementRequest.objects.create(
        merchant=MerchantFactory(sponsor_bank=MemberBankFactory()),
        limit_per_payment=10_000,
        limit_per_month=100_000,
        purpose="Subscription",
        return_url="https://shop.example/back",
    )


FACTORIES.update(
    {
        "payments.paymentcode": _payment_code,
        "payments.agreement": _agreement,
        "payments.agreementrequest": _agreement_request,
    }
)


def _api_key() -> Any:
    from merchants.services import api_key_create

    return api_key_create(merchant=MerchantFactory()).api_key


def _store() -> Any:
    from merchants.models import Store

    merchant = MerchantFactory()
    return Store.objects.create(merchant=merchant, code=f"S{merchant.pk}", name="Flagship", city="Shanghai")


def _webhook_endpoint() -> Any:
    from merchants.services import webhook_endpoint_create

    return webhook_endpoint_create(merchant=MerchantFactory(), url="https://example.com/hooks", event_types=[]).endpoint


def _event() -> Any:
    from merchants.models import Event
    from merchants.services import new_public_id

    return Event.objects.create(
        public_id=new_public_id("evt"), merchant=MerchantFactory(), type="payment.created", payload={}
    )


def _webhook_delivery() -> Any:
    from merchants.models import Event, WebhookDelivery
    from merchants.services import new_public_id

    endpoint = _webhook_endpoint()
    event = Event.objects.create(
        public_id=new_public_id("evt"), merchant=endpoint.merchant, type="payment.created", payload={}
    )
    return WebhookDelivery.objects.create(event=event, event_created_at=event.created_at, endpoint=endpoint)


def _key_delivery() -> Any:
    from django.db import transaction

    from merchants.services import api_key_create, key_deliveries_send

    merchant = MerchantFactory()
    with transaction.atomic():
        issued = api_key_create(merchant=merchant)
        return key_deliveries_send(
            merchant=merchant, issued=[issued], contact_email="owner@example.com", actor=None
        ).deliveries[0]


FACTORIES.update(
    {
        "merchants.keydelivery": _key_delivery,
        "merchants.apikey": _api_key,
        "merchants.store": _store,
        "merchants.webhookendpoint": _webhook_endpoint,
        "merchants.event": _event,
        "merchants.webhookdelivery": _webhook_delivery,
    }
)


VALID_CREDIT_CODE = "91350100M000100Y43"


def make_application(**overrides: Any) -> Any:
    """A submitted merchant application under a new acquiring bank (unless given)."""
    from merchants.services import merchant_application_submit

    bank = overrides.pop("sponsor_bank", None) or MemberBankFactory(acquiring_licence=True)
    fields: dict[str, Any] = {
        "legal_name": "福州示例餐饮有限公司",
        "display_name": "示例餐厅",
        "credit_code": VALID_CREDIT_CODE,
        "category_code": "5812",
        "spend_category": "dining",
        "sponsor_bank": bank,
        "settlement_account_name": "福州示例餐饮有限公司",
        "settlement_bank_name": "Example Bank Fuzhou",
        "settlement_account_number": "6222 0200 0011 2233 445",
        "contact_name": "Li Lei",
        "contact_phone": "+86 591 1234 5678",
        "contact_email": "owner@example.com",
        "store_name": "五一路店",
        "store_city": "福州",
        **overrides,
    }
    return merchant_application_submit(**fields)


def _application() -> Any:
    from merchants.models import MerchantApplication

    MerchantApplication.objects.filter(credit_code=VALID_CREDIT_CODE).update(status="rejected")
    return make_application()


def _settlement_account() -> Any:
    from merchants.models import SettlementAccount

    merchant = MerchantFactory()
    return SettlementAccount.objects.create(
        merchant=merchant, account_name=merchant.legal_name, bank_name="B", account_encrypted="x", account_last4="1234"
    )


FACTORIES.update(
    {
        "merchants.merchantapplication": _application,
        "merchants.settlementaccount": _settlement_account,
    }
)


def make_risk_rule(**fields: Any) -> Any:
    """A risk rule written straight to the table, then announced as an operator's save would be (rules are cached
    with the routing configuration)."""
    from payments import routing
    from payments.models import RiskRule

    rule = RiskRule.objects.create(**fields)
    routing.config_changed()
    return rule


def route_context(**overrides: Any) -> Any:
    """A routing context for a live card payment of ¥100 at noon, with `overrides`."""
    from payments import routing

    base = {
        "merchant_id": 1,
        "mcc": "5812",
        "amount": 10_000,
        "currency": "CNY",
        "method": "card",
        "issuer_id": None,
        "local_time": dt.time(12, 0),
    }
    return routing.RouteContext(**{**base, **overrides})


# --- rewards: the exchange policy -----------------------------------------------------------------------------------


def make_exchange_policy(**fields: Any) -> Any:
    """A version of the alliance's exchange policy; by default one that starts a day later than any other (so not yet
    in force, and each call makes a distinct version)."""
    from rewards.models import ExchangePolicy

    if "effective_from" not in fields:
        latest = ExchangePolicy.objects.order_by("-effective_from").first()
        base = max(latest.effective_from, timezone.now()) if latest is not None else timezone.now()
        fields["effective_from"] = base + dt.timedelta(days=1)
    fields.setdefault("fee_rate", Decimal("0.02"))
    fields.setdefault("minimum_points", 100)
    return ExchangePolicy.objects.create(**fields)


FACTORIES.update({"rewards.exchangepolicy": make_exchange_policy})

# --- benefits and vouchers -----------------------------------------------------------------------------------------


def make_benefit(**fields: Any) -> Any:
    """A published benefit of a new bank (or `bank`), priced 1,000 of its programme's points unless told otherwise,
    on offer from yesterday for a year. M2M lists: `eligible_banks`, `eligible_products`, `stores`."""
    from rewards.models import Benefit

    lists = {name: fields.pop(name, []) for name in ("eligible_banks", "eligible_products", "stores")}
    bank = fields.pop("bank", None) or MemberBankFactory()
    pricing = fields.pop("pricing", Benefit.Pricing.POINTS)
    if pricing == Benefit.Pricing.POINTS:
        if "price_program" not in fields:
            fields["price_program"] = getattr(bank, "points_program", None) or PointsProgramFactory(bank=bank)
        fields.setdefault("price_points", 1000)
    now = timezone.now()
    values: dict[str, Any] = {
        "bank": bank,
        "kind": Benefit.Kind.GIFT,
        "title_zh": "测试权益",
        "title_en": "Test benefit",
        "pricing": pricing,
        "valid_from": now - dt.timedelta(days=1),
        "valid_until": now + dt.timedelta(days=365),
        "status": Benefit.Status.PUBLISHED,
        **fields,
    }
    if "stock_total" in values and "stock_left" not in values:
        values["stock_left"] = values["stock_total"]
    benefit = Benefit.objects.create(**values)
    for name, items in lists.items():
        getattr(benefit, name).set(items)
    return benefit


def _voucher_at_new_bank() -> Any:
    from rewards.services import benefit_redeem, points_earn

    benefit = make_benefit()
    program = benefit.price_program
    card = card_at(CardholderFactory(), benefit.bank)
    points_earn(cardholder_id=card.cardholder_id, program=program, amount=5000, idempotency_key=f"vf:{card.pk}")
    return benefit_redeem(
        cardholder_id=card.cardholder_id,
        card_id=card.pk,
        benefit_id=benefit.pk,
        points={program.pk: 1000},
        idempotency_key=f"vf:{card.pk}",
    )


FACTORIES.update({"rewards.benefit": make_benefit, "rewards.voucher": _voucher_at_new_bank})

# --- promotions ------------------------------------------------------------------------------------------------------


def make_promotion(**fields: Any) -> Any:
    """A live amount-off promotion (¥10 off, ¥1,000 budget) of a new merchant (and so a new sponsor bank), on from
    yesterday for a month."""
    from django.utils import timezone

    from rewards.models import Promotion

    now = timezone.now()
    values: dict[str, Any] = {
        "name": "promotion",
        "kind": Promotion.Kind.AMOUNT_OFF,
        "amount_off": 1_000,
        "budget": 100_000,
        "starts_at": now - dt.timedelta(days=1),
        "ends_at": now + dt.timedelta(days=30),
        **fields,
    }
    if "merchant" not in values:
        values["merchant"] = MerchantFactory()
    return Promotion.objects.create(**values)


def _promotion_use() -> Any:
    from django.utils import timezone

    from rewards.models import PromotionUse

    promotion = make_promotion()
    return PromotionUse.objects.create(
        promotion=promotion,
        cardholder=CardholderFactory(),
        payment=f"pi_{promotion.pk}",
        day=timezone.localdate(),
        discount=1_000,
        cost=1_000,
    )


FACTORIES.update({"rewards.promotion": make_promotion, "rewards.promotionuse": _promotion_use})


# --- settlement batches and payouts ---------------------------------------------------------------------------------

_settlement_days = itertools.count(1)


def make_settlement_batch(merchant: Any = None, **fields: Any) -> Any:
    """A settled T+1 CNY batch of a new merchant (so a new sponsor bank) unless given, owing ¥100.00, for a business
    date no other batch of this run has used."""
    from payments.models import SettlementBatch

    day = dt.date(2026, 1, 1) + dt.timedelta(days=next(_settlement_days))
    values: dict[str, Any] = {
        "merchant": merchant or MerchantFactory(),
        "currency": "CNY",
        "cycle": "t1",
        "period": day.isoformat(),
        "cutoff_at": timezone.make_aware(dt.datetime.combine(day, dt.time(23, 0))),
        "settle_on": day + dt.timedelta(days=1),
        "status": "settled",
        "payments_count": 1,
        "gross": 10_000,
        "net": 10_000,
        "settled_at": timezone.now(),
        **fields,
    }
    return SettlementBatch.objects.create(**values)


def make_payout(batch: Any = None, **fields: Any) -> Any:
    """A ready payout of the batch's net (of a new batch unless given), under the batch's next reference."""
    from payments.models import Payout

    batch = batch or make_settlement_batch()
    values: dict[str, Any] = {
        "batch": batch,
        "merchant": batch.merchant,
        "amount": batch.net,
        "currency": batch.currency,
        "reference": f"{batch.public_id}-p{batch.payouts.count() + 1}",
        "account_last4": "4455",
        **fields,
    }
    return Payout.objects.create(**values)


FACTORIES.update({"payments.payout": make_payout})


def settled_payment(merchant: Any, *, amount: int = 10_000, livemode: bool = True, currency: str = "CNY") -> Any:
    """A captured payment of `merchant`, as a settlement line needs one (no channel, a new cardholder)."""
    return PaymentIntent.objects.create(
        merchant=merchant,
        cardholder=CardholderFactory(),
        acquirer=merchant.sponsor_bank,
        amount=amount,
        amount_captured=amount,
        currency=currency,
        livemode=livemode,
        status="succeeded",
        captured_at=timezone.now(),
        business_date=timezone.localdate(),
    )


def _line_object(merchant: Any, batch_fields: dict[str, Any], line: dict[str, Any]) -> dict[str, Any]:
    line = {"kind": "payment", **line}
    money = {"livemode": batch_fields["livemode"], "currency": batch_fields["currency"]}
    if line["kind"] == "payment" and "payment" not in line:
        line["payment"] = settled_payment(merchant, amount=line["amount"], **money)
    elif line["kind"] == "refund" and "refund" not in line:
        payment = settled_payment(merchant, amount=-line["amount"], **money)
        PaymentIntent.objects.filter(pk=payment.pk).update(
            amount_refunded=-line["amount"], amount_refund_reserved=-line["amount"]
        )
        line["refund"] = Refund.objects.create(
            intent=payment,
            intent_created_at=payment.created_at,
            merchant_id=payment.merchant_id,
            amount=-line["amount"],
            reference=f"{payment.public_id}-r1",
            status="succeeded",
        )
    elif line["kind"] in ("reserve_release", "carried") and "source" not in line:
        line["source"] = make_settlement(
            merchant,
            status="paid",
            currency=batch_fields["currency"],
            livemode=batch_fields["livemode"],
            settle_on=batch_fields["settle_on"] - dt.timedelta(days=1),
        )
    return line


def make_settlement(
    merchant: Any = None, *, lines: list[dict[str, Any]] | None = None, splits: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> Any:  # fmt: skip
    """A settlement batch of `merchant` (by default a new one, under a new bank), settled today, with `lines` — dicts
    of a line's fields (kind payment by default; a payment line without `payment` gets a new captured payment of its
    amount, a refund line (negative amount) a refund of a new payment, a reserve release or a carried line an earlier
    batch as its source) — and `splits`, dicts of split instructions (the acquirer defaults to the sponsor bank).
    The batch's counts and figures are its lines' sums, unless given; `net` follows the formula of the model."""
    from payments.models import SettlementBatch, SettlementLine, SplitInstruction

    merchant = merchant or MerchantFactory()
    day = next(_settlement_days)
    values: dict[str, Any] = {
        "currency": "CNY",
        "livemode": True,
        "cycle": merchant.settlement_cycle,
        "period": (dt.date(2020, 1, 1) + dt.timedelta(days=day)).isoformat(),
        "cutoff_at": timezone.now(),
        "settle_on": timezone.localdate(),
        "status": "settled",
        "settled_at": timezone.now(),
        **fields,
    }
    rows = [_line_object(merchant, values, line) for line in lines or []]

    def total(kind: str, name: str = "amount") -> int:
        return sum(row.get(name, 0) for row in rows if row["kind"] == kind)

    fees = sum(row.get("fee", 0) for row in rows)
    figures: dict[str, Any] = {
        "payments_count": sum(1 for row in rows if row["kind"] == "payment"),
        "gross": total("payment"),
        "refunds_count": sum(1 for row in rows if row["kind"] == "refund"),
        "refunds": -total("refund"),
        "fees": fees,
        "fee_total": int((Decimal(fees) / 100).to_integral_value(rounding="ROUND_HALF_UP")),
        "promotion_charges": sum(row.get("promotion_charge", 0) for row in rows),
        "cofunding_credits": sum(row.get("cofunding_credit", 0) for row in rows),
        "reserve_released": total("reserve_release"),
        "carried_in": total("carried"),
    }
    values = {**figures, **values}
    if "net" not in values:
        values["net"] = (
            values["gross"] - values["refunds"] - values["fee_total"] - values["promotion_charges"]
            + values["cofunding_credits"] - values.get("dispute_debits", 0) - values.get("reserve_held", 0)
            + values["reserve_released"] + values["carried_in"]
        )  # fmt: skip
    batch = SettlementBatch.objects.create(merchant=merchant, **values)
    SettlementLine.objects.bulk_create(SettlementLine(batch=batch, **_line_payment(row)) for row in rows)
    for split in splits or []:
        SplitInstruction.objects.create(batch=batch, **{"acquirer": merchant.sponsor_bank, **split})
    return batch


def _line_payment(row: dict[str, Any]) -> dict[str, Any]:
    """A line names its refund's payment, as settlement's lines do, and the payment's time (the key to the refund)."""
    if row.get("refund") is not None and row.get("payment") is None:
        row = {**row, "payment": row["refund"].intent}
    if row.get("payment") is not None:
        row = {**row, "payment_created_at": row["payment"].created_at}
    return row


def _settlement_batch() -> Any:
    return make_settlement(lines=[{"amount": 10_000, "fee": 6_000}], splits=[{"party": "merchant", "amount": 940_000}])


_reserve_grades = itertools.cycle(["low", "medium", "high"])


def _reserve_policy() -> Any:
    """A reserve policy for a grade that has none yet (or, every grade having one, the next grade's)."""
    from payments.models import ReservePolicy

    taken = set(ReservePolicy.objects.values_list("risk_grade", flat=True))
    free = [grade for grade in ("low", "medium", "high") if grade not in taken]
    if not free:
        return ReservePolicy.objects.get(risk_grade=next(_reserve_grades))
    return ReservePolicy.objects.create(risk_grade=free[0], percent=Decimal("5.00"), hold_working_days=30)


def _statement_import() -> Any:
    from payments.models import StatementImport

    return StatementImport.objects.create(
        channel=ChannelFactory(),
        business_date=dt.date(2026, 3, 2),
        sha256="0" * 64,
        format="csv_v1",
        summary={"matched": {"count": 1, "by": []}},
    )


def _recon_exception() -> Any:
    from payments.models import ReconciliationException

    channel = ChannelFactory()
    return ReconciliationException.objects.create(
        key=f"factory:{channel.pk}",
        channel=channel,
        business_date=dt.date(2026, 3, 2),
        kind="missing_with_us",
        txn_kind="capture",
        reference="x-1",
        currency="CNY",
        channel_amount=100,
    )


def _dispute_feed_cursor() -> Any:
    from payments.models import DisputeFeedCursor

    return DisputeFeedCursor.objects.create(channel=ChannelFactory(acquirer=MemberBankFactory()), position=3)


def _dispute() -> Any:
    """An open chargeback of half of a captured payment (its acquirer and the merchant's sponsor: one new bank)."""
    from payments.models import Dispute

    payment = _payment()
    return Dispute.objects.create(
        payment=payment,
        payment_created_at=payment.created_at,
        merchant=payment.merchant,
        channel=payment.channel,
        kind="chargeback",
        amount=500,
        currency="CNY",
        opened_by="channel",
        respond_by=dt.date(2026, 3, 16),
    )


FACTORIES.update(
    {
        "payments.statementimport": _statement_import,
        "payments.reconciliationexception": _recon_exception,
        "payments.dispute": _dispute,
        "payments.disputefeedcursor": _dispute_feed_cursor,
        "payments.settlementbatch": _settlement_batch,
        "payments.reservepolicy": _reserve_policy,
    }
)


# --- clearing ------------------------------------------------------------------------------------------------------

_clearing_days = itertools.count(1)


def _clearing_run() -> Any:
    from alliance.models import ClearingRun

    return ClearingRun.objects.create(
        business_day=dt.date(2020, 1, 1) + dt.timedelta(days=next(_clearing_days)), currency="CNY", status="netted"
    )


def _clearing_position() -> Any:
    from alliance.models import ClearingPosition

    bank = MemberBankFactory()
    return ClearingPosition.objects.create(
        run=_clearing_run(), bank=bank, party_code=bank.code, receivable=10_000, net=10_000, net_minor=100
    )


def _clearing_instruction() -> Any:
    from alliance.models import ClearingInstruction

    position = _clearing_position()
    return ClearingInstruction.objects.create(
        run=position.run,
        position=position,
        bank=position.bank,
        party_code=position.party_code,
        direction="receive",
        amount=100,
        currency="CNY",
        reference=f"clr-test-{position.pk}",
    )


# --- revenue share ---------------------------------------------------------------------------------------------------


def make_revenue_policy(**fields: Any) -> Any:
    """A revenue-share policy version (a draft unless told): by default everything on issuer volume, from 2026-01."""
    from alliance.models import METRICS, RevenueSharePolicy

    weights = fields.pop("weights", {"issuer_volume": Decimal(1)})
    cost_weights = fields.pop("cost_weights", weights)
    values: dict[str, Any] = {f"weight_{m}": Decimal(weights.get(m, 0)) for m in METRICS}
    values |= {f"cost_weight_{m}": Decimal(cost_weights.get(m, 0)) for m in METRICS}
    top = RevenueSharePolicy.objects.order_by("-version").values_list("version", flat=True).first() or 0
    values |= {"version": top + 1, "effective_from": dt.date(2026, 1, 1), **fields}
    return RevenueSharePolicy.objects.create(**values)


def _membership_fee() -> Any:
    from alliance.models import MembershipFee

    return MembershipFee.objects.create(bank=MemberBankFactory(), amount=100_000, effective_from=dt.date(2026, 1, 1))


def _alliance_cost() -> Any:
    from alliance.models import AllianceCost

    return AllianceCost.objects.create(month=dt.date(2026, 1, 1), amount=50_000, description="test: hosting")


def make_revenue_run(**fields: Any) -> Any:
    """A run row of 2026-01 (the next version number) under a new approved policy; no statements."""
    from alliance.models import RevenueShareRun

    month = fields.pop("month", dt.date(2026, 1, 1))
    top = RevenueShareRun.objects.filter(month=month).order_by("-version").values_list("version", flat=True).first()
    values: dict[str, Any] = {
        "month": month,
        "version": (top or 0) + 1,
        "status": "final",
        "policy": make_revenue_policy(status="approved"),
        "fee_share_units": 0,
        "exchange_fee_units": 0,
        "membership_fees": 0,
        "pool": 0,
        "costs": 0,
        "input_digest": "0" * 64,
        **fields,
    }
    return RevenueShareRun.objects.create(**values)


def make_revenue_statement(run: Any = None, bank: Any = None, **fields: Any) -> Any:
    """A statement of `run` (a new one by default) for `bank` (a new bank by default)."""
    from alliance.models import RevenueShareStatement

    values: dict[str, Any] = {
        "run": run or make_revenue_run(),
        "bank": bank or MemberBankFactory(),
        "share": Decimal(1),
        "cost_share": Decimal(1),
        "amount": 0,
        "cost": 0,
        "net": 0,
        **fields,
    }
    return RevenueShareStatement.objects.create(**values)


FACTORIES.update(
    {
        "alliance.clearingrun": _clearing_run,
        "alliance.clearingposition": _clearing_position,
        "alliance.clearinginstruction": _clearing_instruction,
        "alliance.revenuesharepolicy": make_revenue_policy,
        "alliance.membershipfee": _membership_fee,
        "alliance.alliancecost": _alliance_cost,
        "alliance.revenuesharerun": make_revenue_run,
        "alliance.revenuesharestatement": make_revenue_statement,
    }
)


# --- alliance: segments ----------------------------------------------------------------------------------------------

_segment_serial = itertools.count(1)


def make_segment_rule(**fields: Any) -> Any:
    """A segment rule of its own code: two dining payments in 30 days unless told otherwise."""
    from alliance.models import SegmentRule

    n = next(_segment_serial)
    values: dict[str, Any] = {
        "code": f"segment-{n}",
        "name": f"分群{n}",
        "name_en": f"Segment {n}",
        "categories": ["dining"],
        "window_days": 30,
        "min_payments": 2,
        **fields,
    }
    return SegmentRule.objects.create(**values)


def make_segment_membership(**fields: Any) -> Any:
    from alliance.models import SegmentMembership

    rule = fields.pop("rule", None) or make_segment_rule()
    values: dict[str, Any] = {
        "cardholder": CardholderFactory(),
        "rule": rule,
        "tag": rule.code,
        "rule_version": rule.version,
        "window_days": rule.window_days,
        "payments_count": 2,
        "amount": 5_000,
        "computed_at": timezone.now(),
        **fields,
    }
    return SegmentMembership.objects.create(**values)


FACTORIES.update({"alliance.segmentrule": make_segment_rule, "alliance.segmentmembership": make_segment_membership})


def restore_operator_groups(snapshot: dict[str, list[tuple[str, str]]]) -> None:
    """Puts back the operator groups (and their permissions) a transactional test's flush removed."""
    from django.contrib.auth.models import Permission

    for name, perms in snapshot.items():
        group, created = Group.objects.get_or_create(name=name)
        if created:
            wanted = {(app, codename) for app, codename in perms}
            group.permissions.set(
                [
                    p
                    for p in Permission.objects.select_related("content_type")
                    if (p.content_type.app_label, p.codename) in wanted
                ]
            )

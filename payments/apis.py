"""Merchant API: payments, refunds, quotes, agreements, the summary report and settlements. One thin view per
operation.

Views parse and validate input, call one service (each takes the request's idempotency key) and render the object;
the services write the webhook events of every state change themselves. Amounts are integers in minor units with an
ISO currency.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import QueryDict, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from core.api.fields import (
    MetadataField,
    StrictBooleanField,
    StrictCharField,
    StrictSerializer,
    currency_field,
    minor_amount,
)
from core.api.pagination import CreatedListQuery, ListQuery, created_range, list_response_serializer, page
from core.api.parsers import StrictJSONParser
from core.calendar import local_now
from core.errors import NotFound, ValidationFailed
from core.replicas import replica_view
from core.text import ascii_digits
from merchants.api_base import LIVEMODE_HELP, MerchantAPIView
from merchants.models import Merchant, Mode, SettlementCycle
from rewards import selectors as rewards_selectors

from . import api_support, methods, selectors, services
from .events import agreement_out, agreement_request_out, dispute_out, payment_out, refund_out, settlement_out
from .models import (
    AgreementRequest,
    Dispute,
    DisputeKind,
    PaymentIntent,
    PaymentMethod,
    Refund,
    SettlementBatch,
    SettlementLine,
    SplitInstruction,
)
from .promotion_stats import promotion_stats

# --- payment methods ------------------------------------------------------------------------------------------------
# A merchant never sends card numbers. Each method type names how the cardholder authorised the merchant:
#   payment_code  the one-time code the cardholder shows (scanned at the till), funded by a card or a linked balance;
#   agreement     the token of a standing agreement the cardholder granted this merchant in the portal;
#   balance       the same kind of token, for an agreement funded by a linked bank, wallet or prepaid balance;
#   card_token    test mode only: the sandbox way to pay by a card token its holder shared.


class PaymentMethodIn(StrictSerializer):
    type = serializers.ChoiceField(choices=["payment_code", "agreement", "balance", "card_token"])
    code = StrictCharField(max_length=18, min_length=18, required=False, help_text="payment_code: the 18 digits.")
    token = StrictCharField(max_length=64, required=False, help_text="agreement / balance / card_token: the token.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        needed = "code" if attrs["type"] == "payment_code" else "token"
        if not attrs.get(needed):
            raise serializers.ValidationError(
                {needed: [f"This field is required for {attrs['type']}."]}, code="required"
            )
        if needed == "code" and not ascii_digits(attrs["code"]):
            raise serializers.ValidationError({"code": ["A payment code is 18 digits."]}, code="invalid")
        return attrs


def _card_token(method: dict[str, Any], mode: str) -> dict[str, Any]:
    if mode != Mode.TEST:
        raise ValidationFailed(
            "card_token payments are for test mode only.",
            code="payment_method_unavailable",
            param="payment_method.type",
        )
    card = api_support.card_by_token(token=method["token"])
    return {"cardholder": card.cardholder, "card": card, "method": PaymentMethod.CARD}


def _payment_code(method: dict[str, Any], mode: str) -> dict[str, Any]:
    return {"payment_code": method["code"]}


def _agreement(method: dict[str, Any], mode: str) -> dict[str, Any]:
    return {"agreement_token": method["token"], "method": PaymentMethod.AGREEMENT}


def _balance(method: dict[str, Any], mode: str) -> dict[str, Any]:
    return {"agreement_token": method["token"], "method": PaymentMethod.BALANCE}


PAYMENT_METHOD_RESOLVERS: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
    "card_token": _card_token,
    "payment_code": _payment_code,
    "agreement": _agreement,
    "balance": _balance,
}


def resolve_payment_method(method: dict[str, Any], mode: str) -> dict[str, Any]:
    """The keyword arguments `payment_create` takes for this method."""
    return PAYMENT_METHOD_RESOLVERS[method["type"]](method, mode)


# --- output ---------------------------------------------------------------------------------------------------------


class CardOut(serializers.Serializer):
    bank = serializers.CharField()
    last4 = serializers.CharField()


class PaymentMethodOut(serializers.Serializer):
    type = serializers.CharField()
    card = CardOut(allow_null=True)


class ReviewOut(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=["open", "approved", "rejected", "expired"],
        help_text="open: held, waiting for the alliance's decision (the payment stays requires_capture).",
    )
    reasons = serializers.ListField(child=serializers.CharField(), help_text="Why it was held: the risk rules' codes.")
    deadline = serializers.IntegerField(allow_null=True, help_text="When an undecided review expires (voided).")


STORE_HELP = "The code of the store taking the payment (promotions may be for some stores only)."


class PromotionLineOut(serializers.Serializer):
    promotion = serializers.CharField(help_text="The promotion's id (promo_…).")
    name = serializers.CharField()
    kind = serializers.CharField()
    discount = serializers.IntegerField(help_text="Minor units taken off the price.")
    discount_max = serializers.IntegerField(required=False, help_text="A quoted random discount: at most this.")
    points = serializers.IntegerField(help_text="Points given on top of the card's own.")
    stamp = serializers.IntegerField(
        required=False, allow_null=True, help_text="A frequency reward: this payment's number in the month."
    )
    of = serializers.IntegerField(
        required=False, allow_null=True, help_text="A frequency reward: the Nth payment rewarded."
    )
    voucher = serializers.BooleanField(required=False, help_text="A frequency reward: this payment earns the voucher.")


class PaymentOut(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(default="payment")
    amount = serializers.IntegerField(help_text="The cash charged: the price asked, less discounts and points.")
    discount = serializers.IntegerField(help_text="What the merchant's promotions took off the price asked.")
    promotions = serializers.ListField(child=PromotionLineOut(), help_text="The promotions applied, in order.")
    promotion_points = serializers.IntegerField(help_text="Points the promotions gave (known at capture).")
    store = serializers.CharField(allow_null=True, help_text=STORE_HELP)
    currency = serializers.CharField()
    status = serializers.ChoiceField(choices=PaymentIntent.Status.choices)
    capture_method = serializers.ChoiceField(choices=PaymentIntent.CaptureMethod.choices)
    amount_capturable = serializers.IntegerField()
    amount_captured = serializers.IntegerField()
    amount_refunded = serializers.IntegerField()
    payment_method = PaymentMethodOut()
    description = serializers.CharField()
    merchant_reference = serializers.CharField()
    metadata = serializers.DictField(child=serializers.CharField())
    failure_code = serializers.CharField(allow_null=True)
    failure_message = serializers.CharField(allow_null=True)
    points_earned = serializers.IntegerField()
    points_reversed = serializers.IntegerField()
    livemode = serializers.BooleanField(help_text=LIVEMODE_HELP)
    created = serializers.IntegerField()
    captured = serializers.IntegerField(allow_null=True)
    canceled = serializers.IntegerField(allow_null=True)
    review = ReviewOut(allow_null=True, help_text="Null unless the payment was held for a risk review.")


class RefundOut(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(default="refund")
    payment = serializers.CharField()
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    status = serializers.ChoiceField(choices=Refund.Status.choices)
    reason = serializers.CharField()
    failure_code = serializers.CharField(allow_null=True)
    points_reversed = serializers.IntegerField()
    livemode = serializers.BooleanField(help_text="The mode of the refunded payment.")
    created = serializers.IntegerField()


PaymentList = list_response_serializer("PaymentList", PaymentOut)
RefundList = list_response_serializer("RefundList", RefundOut)
PAYMENT_ID = OpenApiParameter("payment_id", str, OpenApiParameter.PATH, description="The payment's id (pay_…).")

# --- payments -------------------------------------------------------------------------------------------------------


class PaymentCreateIn(StrictSerializer):
    amount = minor_amount()
    currency = currency_field()
    payment_method = PaymentMethodIn()
    capture_method = serializers.ChoiceField(choices=PaymentIntent.CaptureMethod.values, default="automatic")
    confirm = StrictBooleanField(default=False, help_text="Confirm at once (route and authorise).")
    description = StrictCharField(max_length=200, required=False, default="", allow_blank=True)
    merchant_reference = StrictCharField(max_length=64, required=False, default="", allow_blank=True)
    metadata = MetadataField(required=False, default=dict)
    use_points = serializers.IntegerField(
        min_value=0,
        max_value=10**9,
        required=False,
        default=0,
        help_text="Points the cardholder pays with (积分抵现), at the programme's point value; the rest is cash.",
    )
    store = StrictCharField(max_length=32, required=False, help_text=STORE_HELP)


class PaymentListQuery(CreatedListQuery):
    status = serializers.ChoiceField(choices=PaymentIntent.Status.values, required=False)


@method_decorator(replica_view, name="get")
class PaymentListCreateApi(MerchantAPIView):
    @extend_schema(
        operation_id="payments_list", parameters=[PaymentListQuery], responses={200: PaymentList}, tags=["payments"]
    )
    def get(self, request: Request) -> Response:
        query = self.query(PaymentListQuery)
        payments = api_support.payment_list(merchant=self.merchant, livemode=self.livemode, status=query.get("status"))
        payments = payments.filter(**created_range(query))
        return Response(
            page(payments, limit=query["limit"], starting_after=query.get("starting_after"), render=payment_out)
        )

    @extend_schema(
        operation_id="payments_create",
        request=PaymentCreateIn,
        responses={201: PaymentOut},
        tags=["payments"],
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
        examples=[
            OpenApiExample(
                "Pay ¥88.00 by a shared card token and capture at once",
                value={
                    "amount": 8800,
                    "currency": "CNY",
                    "payment_method": {"type": "card_token", "token": "card_test_00000001"},
                    "confirm": True,
                    "merchant_reference": "order-1001",
                },
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        data = self.body(PaymentCreateIn)
        merchant, mode, livemode = self.merchant, self.api_key.mode, self.livemode

        def run(key: str) -> tuple[int, dict[str, Any]]:
            funding = resolve_payment_method(data.pop("payment_method"), mode)
            funding["store"] = api_support.store_get(merchant=merchant, livemode=livemode, code=data.pop("store", None))
            # The service hands back the payment as it left it (a replay of the key loads it): no second read.
            intent = services.payment_create(
                merchant=merchant, idempotency_key=key, livemode=livemode, **funding, **data
            )
            return 201, payment_out(intent)

        return self.idempotent("payment.create", run)


class PaymentDetailApi(MerchantAPIView):
    @extend_schema(
        operation_id="payments_retrieve", parameters=[PAYMENT_ID], responses={200: PaymentOut}, tags=["payments"]
    )
    def get(self, request: Request, payment_id: str) -> Response:
        return Response(
            payment_out(api_support.payment_get(merchant=self.merchant, livemode=self.livemode, payment_id=payment_id))
        )


class EmptyIn(StrictSerializer):
    pass


class CaptureIn(StrictSerializer):
    amount = minor_amount(required=False, help_text="Less than authorised: a partial capture; the rest is released.")


class CancelIn(StrictSerializer):
    reason = serializers.ChoiceField(
        choices=["requested_by_customer", "requested_by_merchant", "duplicate", "fraudulent"],
        default="requested_by_merchant",
    )


def _transition(
    view: MerchantAPIView, payment_id: str, operation: str, call: Callable[[Merchant, str, bool], PaymentIntent]
) -> Response:
    merchant, livemode = view.merchant, view.livemode

    def run(key: str) -> tuple[int, dict[str, Any]]:
        call(merchant, key, livemode)
        return 200, payment_out(api_support.payment_get(merchant=merchant, livemode=livemode, payment_id=payment_id))

    return view.idempotent(operation, run)


class PaymentConfirmApi(MerchantAPIView):
    @extend_schema(
        operation_id="payments_confirm",
        parameters=[PAYMENT_ID],
        request=EmptyIn,
        responses={200: PaymentOut},
        tags=["payments"],
    )
    def post(self, request: Request, payment_id: str) -> Response:
        self.body(EmptyIn)
        return _transition(
            self,
            payment_id,
            "payment.confirm",
            lambda merchant, key, livemode: services.payment_confirm(
                merchant=merchant, payment_id=payment_id, idempotency_key=key, livemode=livemode
            ),
        )


class PaymentCaptureApi(MerchantAPIView):
    @extend_schema(
        operation_id="payments_capture",
        parameters=[PAYMENT_ID],
        request=CaptureIn,
        responses={200: PaymentOut},
        tags=["payments"],
    )
    def post(self, request: Request, payment_id: str) -> Response:
        amount = self.body(CaptureIn).get("amount")
        return _transition(
            self,
            payment_id,
            "payment.capture",
            lambda merchant, key, livemode: services.payment_capture(
                merchant=merchant, payment_id=payment_id, idempotency_key=key, amount=amount, livemode=livemode
            ),
        )


class PaymentCancelApi(MerchantAPIView):
    @extend_schema(
        operation_id="payments_cancel",
        parameters=[PAYMENT_ID],
        request=CancelIn,
        responses={200: PaymentOut},
        tags=["payments"],
    )
    def post(self, request: Request, payment_id: str) -> Response:
        reason = self.body(CancelIn)["reason"]
        return _transition(
            self,
            payment_id,
            "payment.cancel",
            lambda merchant, key, livemode: services.payment_cancel(
                merchant=merchant, payment_id=payment_id, idempotency_key=key, reason=reason, livemode=livemode
            ),
        )


# --- quote ----------------------------------------------------------------------------------------------------------


class QuoteIn(StrictSerializer):
    amount = minor_amount(help_text="The price asked, before promotions.")
    currency = currency_field()
    payment_method = PaymentMethodIn()
    store = StrictCharField(max_length=32, required=False, help_text=STORE_HELP)


class NotAppliedOut(serializers.Serializer):
    promotion = serializers.CharField()
    name = serializers.CharField()
    reason = serializers.CharField(help_text="min_spend, budget_exhausted, cardholder_daily_limit, exclusive, …")
    message = serializers.CharField()


class QuoteOut(serializers.Serializer):
    object = serializers.CharField(default="payment_quote")
    amount = serializers.IntegerField(help_text="The price asked.")
    currency = serializers.CharField()
    discount = serializers.IntegerField(help_text="What the promotions take off (a random discount at its lowest).")
    amount_payable = serializers.IntegerField(help_text="amount − discount: what the cardholder pays.")
    promotions = serializers.ListField(
        child=PromotionLineOut(), help_text="One line per promotion, in the order applied."
    )
    not_applied = serializers.ListField(
        child=NotAppliedOut(), help_text="Every other active promotion at this merchant and why it does not apply."
    )
    points_to_earn = serializers.IntegerField(
        allow_null=True, help_text="Points the card earns on the amount payable; null for a balance."
    )
    promotion_points = serializers.IntegerField(help_text="Points the promotions give on top.")
    earning_rate = serializers.CharField(help_text="Points per yuan at this merchant for this card.")
    points_program = serializers.CharField(allow_null=True)
    points_available = serializers.IntegerField(
        allow_null=True, help_text="Points the cardholder may use in the issuer's programme; null without a wallet."
    )


class PaymentQuoteApi(MerchantAPIView):
    @extend_schema(
        operation_id="payments_quote",
        request=QuoteIn,
        responses={200: QuoteOut},
        tags=["payments"],
        examples=[
            OpenApiExample(
                "Quote ¥120.00",
                value={
                    "amount": 12000,
                    "currency": "CNY",
                    "payment_method": {"type": "card_token", "token": "card_test_00000001"},
                },
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        # A read: it changes nothing, so a read-only key may ask and no idempotency record is kept.
        data = self.body(QuoteIn)
        from core.money import validate_minor_amount

        validate_minor_amount(data["amount"], data["currency"])
        method = data["payment_method"]
        resolved = resolve_payment_method(method, self.api_key.mode)
        funding = api_support.quote_funding(merchant=self.merchant, method=method, card=resolved.get("card"))
        store = api_support.store_get(merchant=self.merchant, livemode=self.livemode, code=data.get("store"))
        return Response(
            api_support.payment_quote(
                merchant=self.merchant,
                livemode=self.livemode,
                funding=funding,
                amount=data["amount"],
                currency=data["currency"],
                store=store,
            )
        )

    def get_permissions(self) -> list[Any]:
        return []  # any valid key; authentication still applies


# --- refunds --------------------------------------------------------------------------------------------------------


class RefundCreateIn(StrictSerializer):
    payment = StrictCharField(max_length=40)
    amount = minor_amount(required=False, help_text="Omit to refund everything not yet refunded.")
    reason = StrictCharField(max_length=100, required=False, default="", allow_blank=True)


class RefundListQuery(CreatedListQuery):
    payment = serializers.CharField(max_length=40, required=False)


@method_decorator(replica_view, name="get")
class RefundListCreateApi(MerchantAPIView):
    @extend_schema(
        operation_id="refunds_list", parameters=[RefundListQuery], responses={200: RefundList}, tags=["refunds"]
    )
    def get(self, request: Request) -> Response:
        query = self.query(RefundListQuery)
        refunds = api_support.refund_list(
            merchant=self.merchant, livemode=self.livemode, payment_id=query.get("payment")
        )
        refunds = refunds.filter(**created_range(query))
        return Response(
            page(refunds, limit=query["limit"], starting_after=query.get("starting_after"), render=refund_out)
        )

    @extend_schema(
        operation_id="refunds_create",
        request=RefundCreateIn,
        responses={201: RefundOut},
        tags=["refunds"],
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
        examples=[
            OpenApiExample(
                "Refund ¥20.00", value={"payment": "pay_…", "amount": 2000, "reason": "returned"}, request_only=True
            )
        ],
    )
    def post(self, request: Request) -> Response:
        data = self.body(RefundCreateIn)
        merchant, livemode = self.merchant, self.livemode

        def run(key: str) -> tuple[int, dict[str, Any]]:
            # 404 before anything else
            api_support.payment_get(merchant=merchant, livemode=livemode, payment_id=data["payment"])
            refund = services.refund_create(
                merchant=merchant,
                payment_id=data["payment"],
                idempotency_key=key,
                amount=data.get("amount"),
                reason=data["reason"],
                livemode=livemode,
            )
            return 201, refund_out(refund)

        return self.idempotent("refund.create", run)


class RefundDetailApi(MerchantAPIView):
    @extend_schema(
        operation_id="refunds_retrieve",
        parameters=[OpenApiParameter("refund_id", str, OpenApiParameter.PATH)],
        responses={200: RefundOut},
        tags=["refunds"],
    )
    def get(self, request: Request, refund_id: str) -> Response:
        return Response(
            refund_out(api_support.refund_get(merchant=self.merchant, livemode=self.livemode, refund_id=refund_id))
        )


# --- agreements -----------------------------------------------------------------------------------------------------
# A merchant asks for an agreement (an agreement request), sends the cardholder to the request's `url` (a page Mengka
# hosts), gets them back at `return_url`, and collects the token once from the agreement.


class LimitsIn(StrictSerializer):
    per_payment = minor_amount(help_text="The most one payment may take, minor units.")
    per_month = minor_amount(help_text="The most all payments of a calendar month may take; at least per_payment.")


class AgreementRequestCreateIn(StrictSerializer):
    currency = currency_field(required=False, default="CNY")
    limits = LimitsIn()
    purpose = StrictCharField(max_length=200, help_text="Shown to the cardholder: what the agreement is for.")
    return_url = StrictCharField(
        max_length=2000, help_text="An http(s) URL the cardholder is sent back to, with agreement_request and status."
    )


class LimitsOut(serializers.Serializer):
    per_payment = serializers.IntegerField()
    per_month = serializers.IntegerField()


class AgreementRequestOut(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(default="agreement_request")
    status = serializers.ChoiceField(choices=AgreementRequest.Status.choices)
    currency = serializers.CharField()
    limits = LimitsOut()
    purpose = serializers.CharField()
    return_url = serializers.CharField()
    url = serializers.CharField(help_text="The hosted page to send the cardholder to.")
    expires = serializers.IntegerField(help_text="Until when the cardholder may answer (unix seconds).")
    agreement = serializers.CharField(allow_null=True, help_text="The agreement's id (agr_…) once granted.")
    livemode = serializers.BooleanField(help_text=LIVEMODE_HELP)
    created = serializers.IntegerField()


class FundingOut(serializers.Serializer):
    type = serializers.ChoiceField(choices=["card", "balance"])
    bank = serializers.CharField()
    last4 = serializers.CharField()


class AgreementOut(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(default="agreement")
    status = serializers.ChoiceField(choices=["active", "revoked"])
    currency = serializers.CharField()
    limits = LimitsOut()
    funding = FundingOut()
    token = serializers.CharField(
        allow_null=True,
        help_text="agt_…: only in the first read after the grant; null afterwards. Pay with it as payment_method "
        "type agreement (card) or balance (balance).",
    )
    token_hint = serializers.CharField()
    created = serializers.IntegerField()
    revoked = serializers.IntegerField(allow_null=True)


AGREEMENT_REQUEST_ID = OpenApiParameter(
    "request_id", str, OpenApiParameter.PATH, description="The agreement request's id (agrq_…)."
)
AGREEMENT_ID = OpenApiParameter("agreement_id", str, OpenApiParameter.PATH, description="The agreement's id (agr_…).")


def _request_out(view: MerchantAPIView, request: AgreementRequest) -> dict[str, Any]:
    url = view.request.build_absolute_uri(reverse("payments:agreement_grant", args=[request.public_id]))
    return agreement_request_out(request, url=url)


class AgreementRequestCreateApi(MerchantAPIView):
    @extend_schema(
        operation_id="agreement_requests_create",
        request=AgreementRequestCreateIn,
        responses={201: AgreementRequestOut},
        tags=["agreements"],
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
        examples=[
            OpenApiExample(
                "Ask for up to ¥200.00 a payment, ¥1,000.00 a month",
                value={
                    "limits": {"per_payment": 20000, "per_month": 100000},
                    "purpose": "Monthly coffee subscription",
                    "return_url": "https://shop.example/agreements/done",
                },
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        data = self.body(AgreementRequestCreateIn)
        merchant, livemode, actor = self.merchant, self.livemode, self.actor

        def run(key: str) -> tuple[int, dict[str, Any]]:
            # The response holds no secret (the token leaves only from GET /agreements/{id}): it may be stored.
            created = methods.agreement_request_create(
                merchant=merchant,
                livemode=livemode,
                currency=data["currency"],
                limit_per_payment=data["limits"]["per_payment"],
                limit_per_month=data["limits"]["per_month"],
                purpose=data["purpose"],
                return_url=data["return_url"],
                actor=actor,
            )
            return 201, _request_out(self, created)

        return self.idempotent("agreement_request.create", run)


class AgreementRequestDetailApi(MerchantAPIView):
    @extend_schema(
        operation_id="agreement_requests_retrieve",
        parameters=[AGREEMENT_REQUEST_ID],
        responses={200: AgreementRequestOut},
        tags=["agreements"],
    )
    def get(self, request: Request, request_id: str) -> Response:
        found = methods.agreement_request_get(merchant=self.merchant, livemode=self.livemode, request_id=request_id)
        return Response(_request_out(self, found))


class AgreementDetailApi(MerchantAPIView):
    @extend_schema(
        operation_id="agreements_retrieve",
        parameters=[AGREEMENT_ID],
        responses={200: AgreementOut},
        tags=["agreements"],
    )
    def get(self, request: Request, agreement_id: str) -> Response:
        agreement, token = methods.agreement_collect(
            merchant=self.merchant, livemode=self.livemode, agreement_id=agreement_id, actor=self.actor
        )
        return Response(agreement_out(agreement, token=token))


# --- reports --------------------------------------------------------------------------------------------------------


def _report_date(value: dt.date) -> dt.date:
    if not dt.date(2000, 1, 1) <= value <= dt.date(2099, 12, 31):
        raise serializers.ValidationError("Dates run from 2000-01-01 to 2099-12-31.")
    return value


class SummaryQuery(StrictSerializer):
    date_from = serializers.DateField(required=False, help_text="Local (Asia/Shanghai) date; default 30 days ago.")
    date_to = serializers.DateField(required=False, help_text="Inclusive; default today.")
    currency = serializers.RegexField(r"^[A-Z]{3}\Z", required=False, default="CNY")

    def validate_date_from(self, value: dt.date) -> dt.date:
        return _report_date(value)

    def validate_date_to(self, value: dt.date) -> dt.date:
        return _report_date(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        today = local_now().date()
        attrs.setdefault("date_to", today)
        attrs.setdefault("date_from", attrs["date_to"] - dt.timedelta(days=30))
        if attrs["date_from"] > attrs["date_to"]:
            raise serializers.ValidationError({"date_from": ["date_from is after date_to."]})
        if (attrs["date_to"] - attrs["date_from"]).days > 366:
            raise serializers.ValidationError({"date_from": ["At most 366 days per report."]})
        return attrs


class FiguresOut(serializers.Serializer):
    count = serializers.IntegerField()
    volume = serializers.IntegerField(help_text="Captured minus refunded, minor units.")
    average_ticket = serializers.IntegerField()
    suppressed = serializers.BooleanField(help_text="Fewer than min_cohort cardholders: their figures are withheld.")
    cardholders = serializers.IntegerField(allow_null=True)
    alliance_card_share = serializers.FloatField(allow_null=True)
    repeat_rate = serializers.FloatField(allow_null=True)


class DayOut(FiguresOut):
    date = serializers.DateField()


class SummaryOut(serializers.Serializer):
    object = serializers.CharField(default="report.summary")
    livemode = serializers.BooleanField(help_text="The key's mode: the report counts only that mode's payments.")
    currency = serializers.CharField()
    date_from = serializers.DateField()
    date_to = serializers.DateField()
    min_cohort = serializers.IntegerField()
    total = FiguresOut()
    by_day = DayOut(many=True)


@method_decorator(replica_view, name="get")
class ReportSummaryApi(MerchantAPIView):
    @extend_schema(
        operation_id="reports_summary", parameters=[SummaryQuery], responses={200: SummaryOut}, tags=["reports"]
    )
    def get(self, request: Request) -> Response:
        query = self.query(SummaryQuery)
        return Response(
            api_support.merchant_summary(
                merchant=self.merchant,
                livemode=self.livemode,
                date_from=query["date_from"],
                date_to=query["date_to"],
                currency=query["currency"],
            )
        )


# --- promotion stats ------------------------------------------------------------------------------------------------
# The promotion itself is rewards' (`/api/v1/promotions`); its figures need payments, so they are read here.


class PromotionGivenOut(serializers.Serializer):
    uses = serializers.IntegerField(help_text="Captured payments the promotion applied to.")
    discount = serializers.IntegerField(help_text="Minor units taken off those payments.")
    points = serializers.IntegerField(help_text="Points it gave.")
    cost = serializers.IntegerField(help_text="What it cost (discounts, points and vouchers at their CNY value).")
    cofunder_cost = serializers.IntegerField(help_text="The co-funding bank's part of the cost.")
    returned_cost = serializers.IntegerField(help_text="Cost handed back to the budget by refunds.")
    returned_points = serializers.IntegerField(help_text="Points reversed by refunds.")
    cardholders = serializers.IntegerField(allow_null=True, help_text="Null below min_cohort.")


class PromotionPeriodOut(serializers.Serializer):
    start = serializers.IntegerField(help_text="Unix seconds.")
    end = serializers.IntegerField(help_text="Unix seconds, exclusive.")
    days = serializers.CharField(help_text="The period's length in days (decimal).")
    count = serializers.IntegerField(help_text="Captured payments (same mode and currency).")
    volume = serializers.IntegerField(help_text="Captured minus refunded, minor units.")
    average_ticket = serializers.IntegerField()
    count_per_day = serializers.CharField(allow_null=True, help_text="Decimal; null for a period of no length.")
    volume_per_day = serializers.IntegerField(allow_null=True, help_text="Minor units, rounded down.")
    cardholders = serializers.IntegerField(allow_null=True, help_text="Null below min_cohort.")


class PromotionBaselineOut(PromotionPeriodOut):
    weeks = serializers.IntegerField(help_text="The whole weeks before the campaign: its length so far, rounded up.")


class PromotionLiftOut(serializers.Serializer):
    count = serializers.CharField(allow_null=True, help_text="Campaign per day / baseline per day; null without one.")
    volume = serializers.CharField(allow_null=True)


class PromotionStatsOut(serializers.Serializer):
    object = serializers.CharField(default="promotion.stats")
    promotion = serializers.CharField()
    livemode = serializers.BooleanField(help_text=LIVEMODE_HELP)
    currency = serializers.CharField()
    min_cohort = serializers.IntegerField()
    uses = serializers.IntegerField(help_text="Payments holding a use now (reserved or captured).")
    budget = serializers.IntegerField()
    budget_used = serializers.IntegerField()
    budget_left = serializers.IntegerField()
    given = PromotionGivenOut()
    campaign = PromotionPeriodOut()
    baseline = PromotionBaselineOut()
    lift = PromotionLiftOut()


@method_decorator(replica_view, name="get")
class PromotionStatsApi(MerchantAPIView):
    @extend_schema(
        operation_id="promotions_stats",
        parameters=[OpenApiParameter("promotion_id", str, OpenApiParameter.PATH, description="promo_…")],
        responses={200: PromotionStatsOut},
        tags=["promotions"],
    )
    def get(self, request: Request, promotion_id: str) -> Response:
        promotion = rewards_selectors.promotion_get(
            merchant_id=self.merchant.pk, livemode=self.livemode, promotion_id=promotion_id
        )
        return Response(promotion_stats(promotion=promotion, now=timezone.now()))


# --- settlements ----------------------------------------------------------------------------------------------------
# What the merchant is owed for one period in one currency (结算), and the lines behind each figure. Amounts are
# minor units; fees are reckoned in hundredths of a minor unit and rounded once per batch (its `fees`), so a line's
# `fee` and a split's `amount` are decimal strings of minor units with two decimals ("36.25"), exact.
# Settlements are written by the settlement job, never by the merchant's own requests, so a merchant cannot miss its
# own write on a lagging replica: their reads go to the read replica when one is configured (docs/scaling.md). The key
# is checked on the primary first (a revoked key is refused at once).

SETTLEMENT_ID = OpenApiParameter(
    "settlement_id", str, OpenApiParameter.PATH, description="The settlement's id (stl_…)."
)
SETTLEMENT_STATUSES = [value for value in SettlementBatch.Status.values if value != SettlementBatch.Status.BUILDING]
HUNDREDTHS_HELP = "Minor units with two decimals, as a string (fees are reckoned in hundredths of a minor unit)."


class SettlementOut(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(default="settlement")
    currency = serializers.CharField()
    cycle = serializers.ChoiceField(choices=SettlementCycle.choices, help_text="t1: next working day; t0: intraday.")
    period = serializers.CharField(help_text="The business date (t1) or the window's cut-off, 2026-12-05T14:00 (t0).")
    cutoff = serializers.IntegerField(help_text="Unix seconds: what was captured or refunded by then is in it.")
    settle_on = serializers.DateField()
    status = serializers.ChoiceField(
        choices=SETTLEMENT_STATUSES,
        help_text="settled: to pay; held: payouts frozen (see hold_reason); carried: nothing to pay, a negative net "
        "carried into the next settlement; paying: payout sent; paid; returned: the payout came back.",
    )
    hold_reason = serializers.CharField(allow_null=True)
    payments = serializers.IntegerField(help_text="Captured payments in it.")
    gross = serializers.IntegerField(help_text="Captured, minor units.")
    refunds_count = serializers.IntegerField()
    refunds = serializers.IntegerField(help_text="Refunded, minor units.")
    fees = serializers.IntegerField(help_text="Fees, rounded once for the whole settlement.")
    promotion_charges = serializers.IntegerField(help_text="What your promotions cost you.")
    cofunding_credits = serializers.IntegerField(help_text="What co-funding banks paid towards your promotions.")
    dispute_debits = serializers.IntegerField()
    reserve_held = serializers.IntegerField(help_text="The rolling reserve kept from this settlement.")
    reserve_release_on = serializers.DateField(allow_null=True)
    reserve_released = serializers.IntegerField(help_text="Earlier reserves released into this settlement.")
    carried_in = serializers.IntegerField(help_text="An earlier negative net taken from this one.")
    carried_out = serializers.IntegerField(help_text="A negative net carried into the next settlement.")
    net = serializers.IntegerField(
        help_text="gross − refunds − fees − promotion_charges + cofunding_credits − dispute_debits − reserve_held + "
        "reserve_released + carried_in."
    )
    livemode = serializers.BooleanField(help_text=LIVEMODE_HELP)
    created = serializers.IntegerField()
    settled = serializers.IntegerField(allow_null=True)


class SplitOut(serializers.Serializer):
    party = serializers.ChoiceField(choices=SplitInstruction.Party.choices)
    bank = serializers.CharField(allow_null=True, help_text="The member bank paid (its code); null for you.")
    acquirer = serializers.CharField(help_text="The acquirer of record that carries the split out (its code).")
    amount = serializers.CharField(help_text=HUNDREDTHS_HELP)


class SettlementDetailOut(SettlementOut):
    splits = SplitOut(many=True, help_text="分账: what the acquirer of record pays each party out of it.")


class SettlementLineOut(serializers.Serializer):
    id = serializers.CharField(help_text="stll_…: the line's number in this settlement (ascending, with gaps).")
    object = serializers.CharField(default="settlement_line")
    kind = serializers.ChoiceField(choices=SettlementLine.Kind.choices)
    payment = serializers.CharField(allow_null=True, help_text="The payment (kind payment).")
    refund = serializers.CharField(allow_null=True, help_text="The refund (kind refund).")
    dispute = serializers.CharField(
        allow_null=True, help_text="The dispute lost, accepted or expired (kind dispute; its payment is `payment`)."
    )
    # A declared field, taken off the class by DRF's metaclass: it does not shadow `Field.source` at run time.
    source = serializers.CharField(  # type: ignore[assignment]
        allow_null=True, help_text="The earlier settlement whose reserve is released or whose negative net is carried."
    )
    amount = serializers.IntegerField(help_text="Minor units, signed: a refund is negative.")
    fee = serializers.CharField(help_text=HUNDREDTHS_HELP + " Signed: a fee handed back is negative.")
    promotion_charge = serializers.IntegerField()
    cofunding_credit = serializers.IntegerField()


SettlementList = list_response_serializer("SettlementList", SettlementOut)
SettlementLineList = list_response_serializer("SettlementLineList", SettlementLineOut)


class SettlementListQuery(ListQuery):
    status = serializers.ChoiceField(choices=SETTLEMENT_STATUSES, required=False)
    settle_on_gte = serializers.DateField(required=False, help_text="Settling on or after this date (YYYY-MM-DD).")
    settle_on_lte = serializers.DateField(required=False, help_text="Settling on or before this date.")

    def validate_settle_on_gte(self, value: dt.date) -> dt.date:
        return _report_date(value)

    def validate_settle_on_lte(self, value: dt.date) -> dt.date:
        return _report_date(value)


class SettlementLinesQuery(ListQuery):
    starting_after = serializers.CharField(
        max_length=64, required=False, help_text="The id of the last line received (stll_…)."
    )


class EmptyQuery(StrictSerializer):
    pass


@method_decorator(replica_view, name="get")
class SettlementListApi(MerchantAPIView):
    @extend_schema(
        operation_id="settlements_list",
        parameters=[SettlementListQuery],
        responses={200: SettlementList},
        tags=["settlements"],
    )
    def get(self, request: Request) -> Response:
        query = self.query(SettlementListQuery)
        batches = api_support.settlement_list(
            merchant=self.merchant,
            livemode=self.livemode,
            status=query.get("status"),
            settle_on_gte=query.get("settle_on_gte"),
            settle_on_lte=query.get("settle_on_lte"),
        )
        return Response(
            page(batches, limit=query["limit"], starting_after=query.get("starting_after"), render=settlement_out)
        )


@method_decorator(replica_view, name="get")
class SettlementDetailApi(MerchantAPIView):
    @extend_schema(
        operation_id="settlements_retrieve",
        parameters=[SETTLEMENT_ID],
        responses={200: SettlementDetailOut},
        tags=["settlements"],
    )
    def get(self, request: Request, settlement_id: str) -> Response:
        batch = api_support.settlement_get(merchant=self.merchant, livemode=self.livemode, settlement_id=settlement_id)
        return Response({**settlement_out(batch), "splits": selectors.settlement_splits(batch_id=batch.pk)})


@method_decorator(replica_view, name="get")
class SettlementLinesApi(MerchantAPIView):
    @extend_schema(
        operation_id="settlements_lines",
        parameters=[SETTLEMENT_ID, SettlementLinesQuery],
        responses={200: SettlementLineList},
        tags=["settlements"],
    )
    def get(self, request: Request, settlement_id: str) -> Response:
        query = self.query(SettlementLinesQuery)
        batch = api_support.settlement_get(merchant=self.merchant, livemode=self.livemode, settlement_id=settlement_id)
        after = None
        if query.get("starting_after") is not None:
            after = selectors.line_position(query["starting_after"])
            if after is None:
                raise NotFound("starting_after is not a line of this settlement.", param="starting_after")
        lines = selectors.settlement_lines_page(batch_id=batch.pk, after=after, limit=query["limit"])
        return Response(
            {"object": "list", "data": [line.as_dict() for line in lines.lines], "has_more": lines.has_more}
        )


@method_decorator(replica_view, name="get")
class SettlementLinesCsvApi(MerchantAPIView):
    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # The body is CSV whatever the client accepts; an error is JSON, as everywhere under /api/.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        operation_id="settlements_lines_csv",
        parameters=[SETTLEMENT_ID],
        responses={(200, "text/csv"): OpenApiTypes.STR},
        description="Every line of the settlement as CSV (UTF-8, a header row first; the columns are the fields of "
        "a line, `fee` in minor units with two decimals), streamed.",
        tags=["settlements"],
    )
    def get(self, request: Request, settlement_id: str) -> StreamingHttpResponse:
        self.query(EmptyQuery)
        batch = api_support.settlement_get(merchant=self.merchant, livemode=self.livemode, settlement_id=settlement_id)
        response = StreamingHttpResponse(
            selectors.settlement_lines_csv(batch_id=batch.pk), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="{batch.public_id}-lines.csv"'
        return response


__all__ = ["ListQuery"]


# --- disputes -------------------------------------------------------------------------------------------------------
# A channel (or an operator) disputes a payment; the merchant hears of it by webhook (`dispute.created`), answers once
# with evidence (text and PDF, PNG or JPEG files, multipart) before `respond_by`, or accepts it.

DISPUTE_ID = OpenApiParameter("dispute_id", str, OpenApiParameter.PATH, description="The dispute's id (dp_…).")


class DisputeFileOut(serializers.Serializer):
    name = serializers.CharField()
    content_type = serializers.ChoiceField(choices=["application/pdf", "image/png", "image/jpeg"])
    size = serializers.IntegerField()
    sha256 = serializers.CharField()


class DisputeEvidenceOut(serializers.Serializer):
    text = serializers.CharField(allow_null=True)
    files = DisputeFileOut(many=True)


class DisputeOut(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(default="dispute")
    payment = serializers.CharField()
    kind = serializers.ChoiceField(
        choices=DisputeKind.choices,
        help_text="retrieval: the channel asks for documents, no money; chargeback: the cardholder's bank takes the "
        "money back; error_adjustment: the channel corrects a processing error.",
    )
    reason_code = serializers.CharField(allow_null=True)
    amount = serializers.IntegerField(help_text="Minor units.")
    currency = serializers.CharField()
    status = serializers.ChoiceField(
        choices=Dispute.Status.choices,
        help_text="open → evidence_submitted → won / lost; accepted (by you); expired (no answer by respond_by). "
        "Lost, accepted and expired chargebacks and error adjustments are debited from your next settlement.",
    )
    opened_by = serializers.ChoiceField(choices=Dispute.OpenedBy.choices)
    respond_by = serializers.DateField(help_text="The last day (Asia/Shanghai) to answer, in PRC working days.")
    answered = serializers.IntegerField(allow_null=True, help_text="Unix seconds: your answer sent to the channel.")
    evidence = DisputeEvidenceOut()
    points_reversed = serializers.IntegerField()
    livemode = serializers.BooleanField(help_text=LIVEMODE_HELP)
    created = serializers.IntegerField()
    closed = serializers.IntegerField(allow_null=True)


DisputeList = list_response_serializer("DisputeList", DisputeOut)


class DisputeListQuery(ListQuery):
    status = serializers.ChoiceField(choices=Dispute.Status.choices, required=False)
    kind = serializers.ChoiceField(choices=DisputeKind.choices, required=False)


class DisputeEvidenceIn(StrictSerializer):
    text = serializers.CharField(required=False, max_length=20000, help_text="Your account of the payment.")
    files = serializers.ListField(
        child=serializers.FileField(),
        required=False,
        help_text="PDF, PNG or JPEG (checked by content), at most 5 MB each and 10 per dispute.",
    )


@method_decorator(replica_view, name="get")
class DisputeListApi(MerchantAPIView):
    @extend_schema(
        operation_id="disputes_list", parameters=[DisputeListQuery], responses={200: DisputeList}, tags=["disputes"]
    )
    def get(self, request: Request) -> Response:
        query = self.query(DisputeListQuery)
        disputes = api_support.dispute_list(
            merchant=self.merchant, livemode=self.livemode, status=query.get("status"), kind=query.get("kind")
        )
        return Response(
            page(disputes, limit=query["limit"], starting_after=query.get("starting_after"), render=dispute_out)
        )


class DisputeDetailApi(MerchantAPIView):
    @extend_schema(
        operation_id="disputes_retrieve", parameters=[DISPUTE_ID], responses={200: DisputeOut}, tags=["disputes"]
    )
    def get(self, request: Request, dispute_id: str) -> Response:
        return Response(
            dispute_out(services.dispute_get(merchant=self.merchant, livemode=self.livemode, dispute_id=dispute_id))
        )


class DisputeEvidenceApi(MerchantAPIView):
    parser_classes = [MultiPartParser, StrictJSONParser]

    @property
    def max_body_bytes(self) -> int:  # type: ignore[override]
        return settings.DISPUTE_EVIDENCE_MAX_FILES * settings.DISPUTE_EVIDENCE_MAX_BYTES + 1024 * 1024

    @extend_schema(
        operation_id="disputes_evidence",
        parameters=[DISPUTE_ID, OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
        request={"multipart/form-data": DisputeEvidenceIn},
        responses={200: DisputeOut},
        tags=["disputes"],
        description="Answers the dispute, once: the evidence is sent to the channel. Refused with `dispute_closed`, "
        "`deadline_passed`, `evidence_already_submitted`, `file_type_not_allowed`, `file_too_large` or "
        "`too_many_files`.",
    )
    def post(self, request: Request, dispute_id: str) -> Response:
        data = request.data
        if isinstance(data, QueryDict):  # multipart: every value of a field, files apart
            fields = {key: data.getlist(key) for key in data}
            files = request.FILES.getlist("files")
        elif isinstance(data, dict):  # a JSON body: a text alone
            fields = {key: [value] for key, value in data.items()}
            files = []
        else:
            raise serializers.ValidationError({"text": ["Send a form (multipart) or a JSON object."]}, code="invalid")
        unknown = sorted(set(fields) - {"text", "files"})
        if unknown:
            raise serializers.ValidationError({unknown[0]: ["Unknown field."]}, code="unknown_field")
        texts = fields.get("text", [])
        if len(texts) > 1 or any(not isinstance(text, str) or len(text) > 20000 for text in texts):
            raise serializers.ValidationError({"text": ["One text of at most 20,000 characters."]}, code="invalid")
        if any(not hasattr(item, "read") for item in fields.get("files", []) if item != ""):
            raise serializers.ValidationError({"files": ["Files are sent as multipart file parts."]}, code="invalid")
        text = texts[0] if texts else ""
        merchant, livemode, actor = self.merchant, self.livemode, self.actor

        def run(key: str) -> tuple[int, dict[str, Any]]:
            dispute = services.dispute_evidence_submit(
                merchant=merchant, livemode=livemode, dispute_id=dispute_id, text=text, files=files, actor=actor
            )
            return 200, dispute_out(dispute)

        return self.idempotent("dispute.evidence", run)


class DisputeAcceptApi(MerchantAPIView):
    @extend_schema(
        operation_id="disputes_accept",
        parameters=[DISPUTE_ID, OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
        request=None,
        responses={200: DisputeOut},
        tags=["disputes"],
        description="Accepts the dispute instead of answering it: closed `accepted`, debited from your next "
        "settlement. Refused with `dispute_closed` once closed or answered.",
    )
    def post(self, request: Request, dispute_id: str) -> Response:
        self.body(EmptyQuery)
        merchant, livemode, actor = self.merchant, self.livemode, self.actor

        def run(key: str) -> tuple[int, dict[str, Any]]:
            dispute = services.dispute_accept(merchant=merchant, livemode=livemode, dispute_id=dispute_id, actor=actor)
            return 200, dispute_out(dispute)

        return self.idempotent("dispute.accept", run)

"""Merchant API: verifying and redeeming a cardholder's voucher at the till; the merchant's promotions. One thin view
per operation.

Vouchers are live objects: a test key sees none (404), as a voucher of another merchant is 404 to every other.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from core.api.fields import StrictBooleanField, StrictCharField, StrictIntegerField, StrictSerializer, currency_field
from core.api.pagination import LATEST_TIMESTAMP, ListQuery, list_response_serializer, page
from core.errors import NotFound
from members.models import CardProduct, SpendCategory
from merchants.api_base import LIVEMODE_HELP, MerchantAPIView
from merchants.models import Merchant

from . import selectors, services
from .models import Promotion, Voucher

CODE = OpenApiParameter(
    "code", str, OpenApiParameter.PATH, description="The voucher's code as the cardholder shows it (dashes allowed)."
)


class VoucherBenefitOut(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    title_zh = serializers.CharField()
    title_en = serializers.CharField()
    terms_zh = serializers.CharField()
    terms_en = serializers.CharField()


class VoucherOut(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(default="voucher")
    code_hint = serializers.CharField(help_text="The code's last four characters.")
    state = serializers.ChoiceField(choices=Voucher.State.values)
    benefit = VoucherBenefitOut()
    stores = serializers.ListField(
        child=serializers.CharField(), help_text="Your store codes where it is redeemed; empty: any of your stores."
    )
    redeemed_store = serializers.CharField(allow_null=True)
    livemode = serializers.BooleanField(help_text="Always true: vouchers are live objects.")
    issued = serializers.IntegerField()
    valid_until = serializers.IntegerField()
    redeemed = serializers.IntegerField(allow_null=True)


class VoucherRedeemIn(StrictSerializer):
    store = serializers.RegexField(
        r"^[A-Za-z0-9_-]{1,32}\Z", required=False, help_text="The store redeeming it (required when the voucher lists)."
    )


def _live(view: MerchantAPIView) -> Merchant:
    if not view.livemode:
        raise NotFound("No such voucher.", param="code")
    return view.merchant


class VoucherDetailApi(MerchantAPIView):
    @extend_schema(operation_id="vouchers_retrieve", parameters=[CODE], responses={200: VoucherOut}, tags=["vouchers"])
    def get(self, request: Request, code: str) -> Response:
        merchant = _live(self)
        return Response(services.voucher_out(services.voucher_for_merchant(merchant=merchant, code=code)))


class VoucherRedeemApi(MerchantAPIView):
    @extend_schema(
        operation_id="vouchers_redeem",
        parameters=[CODE],
        request=VoucherRedeemIn,
        responses={200: VoucherOut},
        tags=["vouchers"],
        examples=[OpenApiExample("At a store", value={"store": "SH-001"})],
    )
    def post(self, request: Request, code: str) -> Response:
        merchant = _live(self)
        store = self.body(VoucherRedeemIn).get("store")

        def run(key: str) -> tuple[int, dict[str, Any]]:
            voucher = services.voucher_redeem(merchant=merchant, code=code, store_code=store, actor=self.actor)
            return 200, services.voucher_out(voucher)

        return self.idempotent("voucher.redeem", run)


# --- promotions -------------------------------------------------------------------------------------------------------
# A merchant's campaigns (新商盟). Input is flat; references are codes: stores by your store code (of the key's
# mode), card banks by bank code, card products as "BANK/CODE", the co-funding bank by its code, the frequency
# reward's voucher by the benefit's id. Decimal figures (percent_off, multiplier, cashback_rate, cofunder_share) are
# strings or JSON numbers in, strings out. Times are unix seconds. Values are checked as a whole by the service
# (422 naming the field); a body of the wrong shape is a 400.

PROMOTION_KINDS = Promotion.Kind.values  # named in the schema's enum overrides (settings): one name for one set
PROMOTION_ID = OpenApiParameter("promotion_id", str, OpenApiParameter.PATH, description="The promotion's id (promo_…).")
LIST_HELP = {
    "stores": "Your store codes (this mode); empty: every store.",
    "categories": "Spend categories: " + ", ".join(SpendCategory.values) + "; empty: any.",
    "card_banks": "Card issuers' bank codes; empty: any bank.",
    "card_products": 'Card products as "BANK/CODE"; empty: any product.',
    "card_tiers": "Card tiers: " + ", ".join(CardProduct.Tier.values) + "; empty: any.",
    "methods": "Payment methods: " + ", ".join(services.campaigns.METHODS) + "; empty: any.",
    "weekdays": "1 = Monday … 7 = Sunday (local time); empty: every day.",
    "segment_tags": "Only cardholders in one of these segments who consent to personalised offers. Needs an "
    "active promotion for everyone whose dates cover this one's.",
}


def _promotion_fields(*, create: bool) -> dict[str, serializers.Field]:
    """The input fields; on update every one is optional and null clears an optional value."""

    def need(**kwargs: Any) -> dict[str, Any]:
        return kwargs if create else {**kwargs, "required": False}

    def optional(**kwargs: Any) -> dict[str, Any]:
        return {**kwargs, "required": False, "allow_null": True}

    def codes(name: str, length: int, child: type[serializers.Field] = StrictCharField) -> serializers.ListField:
        item = child(max_length=length) if child is StrictCharField else child()
        return serializers.ListField(child=item, max_length=100, required=False, help_text=LIST_HELP[name])

    return {
        "name": StrictCharField(**need(max_length=120)),
        "description": StrictCharField(max_length=500, required=False, allow_blank=True),
        "kind": serializers.ChoiceField(choices=PROMOTION_KINDS, **need()),
        "currency": currency_field(required=False, help_text="ISO 4217 code; default CNY. Points kinds: CNY only."),
        "amount_off": StrictIntegerField(**optional(help_text="amount_off: minor units taken off.")),
        "percent_off": serializers.DecimalField(
            max_digits=5, decimal_places=2, **optional(help_text="percent_off: 0 < p < 100; 20 = 20% off.")
        ),
        "max_discount": StrictIntegerField(**optional(help_text="percent_off: the most taken off one payment.")),
        "multiplier": serializers.DecimalField(
            max_digits=6, decimal_places=2, **optional(help_text="points_multiplier: above 1; 2 = double points.")
        ),
        "random_min": StrictIntegerField(**optional(help_text="random_off: the least taken off (≥ 0).")),
        "random_max": StrictIntegerField(**optional(help_text="random_off: the most taken off.")),
        "random_mean": StrictIntegerField(
            **optional(help_text="random_off: the expected discount (random_min ≤ mean < random_max); default midway.")
        ),
        "cashback_rate": serializers.DecimalField(
            max_digits=6, decimal_places=4, **optional(help_text="cashback_points: share of the cash, 0 < r ≤ 1.")
        ),
        "frequency_count": StrictIntegerField(**optional(help_text="frequency_reward: every Nth payment in a month.")),
        "reward_benefit": StrictIntegerField(
            **optional(help_text="frequency_reward: the id of a published benefit you offer, given as a voucher.")
        ),
        "min_spend": StrictIntegerField(required=False, help_text="Minor units; the price asked must reach it."),
        "stores": codes("stores", 32),
        "categories": codes("categories", 16),
        "card_banks": codes("card_banks", 16),
        "card_products": codes("card_products", 64),
        "card_tiers": codes("card_tiers", 16),
        "methods": codes("methods", 16),
        "weekdays": codes("weekdays", 0, StrictIntegerField),
        "hour_from": StrictIntegerField(**optional(help_text="From this hour (0-23, local time).")),
        "hour_to": StrictIntegerField(**optional(help_text="Until this hour, exclusive (1-24, after hour_from).")),
        "first_purchase": StrictBooleanField(required=False, help_text="Only a cardholder's first payment with you."),
        "segment_tags": codes("segment_tags", 40),
        "budget": StrictIntegerField(**need(help_text="The most the promotion may cost, minor units.")),
        "max_uses": StrictIntegerField(**optional(help_text="The most payments it applies to.")),
        "per_cardholder_daily": StrictIntegerField(**optional(help_text="Uses per cardholder per day.")),
        "per_cardholder": StrictIntegerField(**optional(help_text="Uses per cardholder over the campaign.")),
        "stacking": serializers.ChoiceField(
            choices=Promotion.Stacking.values,
            required=False,
            help_text="exclusive (default): applies only alone; stackable: with others, in priority order.",
        ),
        "priority": StrictIntegerField(required=False, help_text="Higher applies first (-32768 to 32767)."),
        "starts_at": StrictIntegerField(
            min_value=0, max_value=LATEST_TIMESTAMP, required=False, help_text="Unix seconds; default now."
        ),
        "ends_at": StrictIntegerField(**need(min_value=0, max_value=LATEST_TIMESTAMP, help_text="Unix seconds.")),
        "cofunder": StrictCharField(
            **optional(max_length=16, help_text="The code of a member bank asked to co-fund; it applies once approved.")
        ),
        "cofunder_share": serializers.DecimalField(
            max_digits=5, decimal_places=4, **optional(help_text="The bank's share of the cost, 0 < s ≤ 1.")
        ),
    }


PromotionCreateIn: type[StrictSerializer] = type(
    "PromotionCreateIn",
    (StrictSerializer,),
    {"__doc__": StrictSerializer.__doc__, "__module__": __name__, **_promotion_fields(create=True)},
)
PromotionUpdateIn: type[StrictSerializer] = type(
    "PromotionUpdateIn",
    (StrictSerializer,),
    {"__doc__": StrictSerializer.__doc__, "__module__": __name__, **_promotion_fields(create=False)},
)


class PromotionConditionsOut(serializers.Serializer):
    min_spend = serializers.IntegerField()
    stores = serializers.ListField(child=serializers.CharField(), help_text=LIST_HELP["stores"])
    categories = serializers.ListField(child=serializers.CharField())
    card_banks = serializers.ListField(child=serializers.CharField())
    card_products = serializers.ListField(child=serializers.CharField(), help_text='"BANK/CODE"')
    card_tiers = serializers.ListField(child=serializers.CharField())
    methods = serializers.ListField(child=serializers.CharField())
    weekdays = serializers.ListField(child=serializers.IntegerField())
    hour_from = serializers.IntegerField(allow_null=True)
    hour_to = serializers.IntegerField(allow_null=True)
    first_purchase = serializers.BooleanField()
    segment_tags = serializers.ListField(child=serializers.CharField())


class PromotionLimitsOut(serializers.Serializer):
    max_uses = serializers.IntegerField(allow_null=True)
    per_cardholder_daily = serializers.IntegerField(allow_null=True)
    per_cardholder = serializers.IntegerField(allow_null=True)


class PromotionCofundingOut(serializers.Serializer):
    bank = serializers.CharField()
    share = serializers.CharField()
    status = serializers.ChoiceField(
        choices=["pending", "approved", "rejected"], help_text="It applies only once the bank approved it."
    )


class PromotionOut(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(default="promotion")
    name = serializers.CharField()
    description = serializers.CharField()
    kind = serializers.ChoiceField(choices=PROMOTION_KINDS)
    currency = serializers.CharField()
    status = serializers.ChoiceField(choices=Promotion.Status.values)
    amount_off = serializers.IntegerField(allow_null=True)
    percent_off = serializers.CharField(allow_null=True)
    max_discount = serializers.IntegerField(allow_null=True)
    multiplier = serializers.CharField(allow_null=True)
    random_min = serializers.IntegerField(allow_null=True)
    random_max = serializers.IntegerField(allow_null=True)
    random_mean = serializers.IntegerField(allow_null=True)
    cashback_rate = serializers.CharField(allow_null=True)
    frequency_count = serializers.IntegerField(allow_null=True)
    reward_benefit = serializers.IntegerField(allow_null=True)
    conditions = PromotionConditionsOut()
    budget = serializers.IntegerField()
    budget_used = serializers.IntegerField(help_text="Reserved and consumed by payments, less what refunds returned.")
    budget_left = serializers.IntegerField()
    uses = serializers.IntegerField()
    limits = PromotionLimitsOut()
    stacking = serializers.ChoiceField(choices=Promotion.Stacking.values)
    priority = serializers.IntegerField()
    starts_at = serializers.IntegerField()
    ends_at = serializers.IntegerField()
    cofunding = PromotionCofundingOut(allow_null=True)
    livemode = serializers.BooleanField(help_text=LIVEMODE_HELP)
    created = serializers.IntegerField()


class PromotionListQuery(ListQuery):
    status = serializers.ChoiceField(choices=Promotion.Status.values, required=False)


class PromotionEmptyIn(StrictSerializer):
    pass


PromotionList = list_response_serializer("PromotionList", PromotionOut)


def _moments(data: dict[str, Any]) -> dict[str, Any]:
    for name in ("starts_at", "ends_at"):
        if data.get(name) is not None:
            data[name] = dt.datetime.fromtimestamp(data[name], tz=dt.UTC)
    return data


class PromotionListCreateApi(MerchantAPIView):
    @extend_schema(
        operation_id="promotions_list",
        parameters=[PromotionListQuery],
        responses={200: PromotionList},
        tags=["promotions"],
    )
    def get(self, request: Request) -> Response:
        query = self.query(PromotionListQuery)
        promotions = selectors.promotion_list(
            merchant_id=self.merchant.pk, livemode=self.livemode, status=query.get("status")
        )
        return Response(
            page(
                promotions,
                limit=query["limit"],
                starting_after=query.get("starting_after"),
                render=services.promotion_out,
            )
        )

    @extend_schema(
        operation_id="promotions_create",
        request=PromotionCreateIn,
        responses={201: PromotionOut},
        tags=["promotions"],
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
        examples=[
            OpenApiExample(
                "满100减20 at two stores, weekdays",
                value={
                    "name": "Lunch offer",
                    "kind": "amount_off",
                    "amount_off": 2000,
                    "min_spend": 10000,
                    "stores": ["SH-001", "SH-002"],
                    "weekdays": [1, 2, 3, 4, 5],
                    "budget": 5000000,
                    "per_cardholder_daily": 1,
                    "ends_at": 1798732800,
                },
                request_only=True,
            ),
            OpenApiExample(
                "8折 capped at ¥50, co-funded half by a bank",
                value={
                    "name": "Card week",
                    "kind": "percent_off",
                    "percent_off": "20",
                    "max_discount": 5000,
                    "card_banks": ["ICBC"],
                    "budget": 10000000,
                    "ends_at": 1798732800,
                    "cofunder": "ICBC",
                    "cofunder_share": "0.5",
                },
                request_only=True,
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        data = _moments(self.body(PromotionCreateIn))
        merchant, livemode, actor = self.merchant, self.livemode, self.actor

        def run(key: str) -> tuple[int, dict[str, Any]]:
            promotion = services.promotion_create(merchant=merchant, livemode=livemode, actor=actor, **data)
            return 201, services.promotion_out(_read(self, promotion.public_id))

        return self.idempotent("promotion.create", run)


def _read(view: MerchantAPIView, promotion_id: str) -> Promotion:
    return selectors.promotion_get(merchant_id=view.merchant.pk, livemode=view.livemode, promotion_id=promotion_id)


class PromotionDetailApi(MerchantAPIView):
    @extend_schema(
        operation_id="promotions_retrieve",
        parameters=[PROMOTION_ID],
        responses={200: PromotionOut},
        tags=["promotions"],
    )
    def get(self, request: Request, promotion_id: str) -> Response:
        return Response(services.promotion_out(_read(self, promotion_id)))

    @extend_schema(
        operation_id="promotions_update",
        parameters=[PROMOTION_ID, OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
        request=PromotionUpdateIn,
        responses={200: PromotionOut},
        tags=["promotions"],
        examples=[OpenApiExample("Raise the budget", value={"budget": 8000000}, request_only=True)],
    )
    def post(self, request: Request, promotion_id: str) -> Response:
        promotion = _read(self, promotion_id)
        data = _moments(self.body(PromotionUpdateIn))

        def run(key: str) -> tuple[int, dict[str, Any]]:
            services.promotion_update(promotion=promotion, actor=self.actor, **data)
            return 200, services.promotion_out(_read(self, promotion_id))

        return self.idempotent("promotion.update", run)


def _transition(view: MerchantAPIView, promotion_id: str, operation: str, call: Any) -> Response:
    promotion = _read(view, promotion_id)
    view.body(PromotionEmptyIn)

    def run(key: str) -> tuple[int, dict[str, Any]]:
        call(promotion=promotion, actor=view.actor)
        return 200, services.promotion_out(_read(view, promotion_id))

    return view.idempotent(operation, run)


def _transition_schema(operation: str, description: str) -> Any:
    return extend_schema(
        operation_id=f"promotions_{operation}",
        parameters=[PROMOTION_ID, OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER)],
        request=PromotionEmptyIn,
        responses={200: PromotionOut},
        tags=["promotions"],
        description=description,
    )


class PromotionPauseApi(MerchantAPIView):
    @_transition_schema("pause", "Active → paused: it applies to no payment until resumed.")
    def post(self, request: Request, promotion_id: str) -> Response:
        return _transition(self, promotion_id, "promotion.pause", services.promotion_pause)


class PromotionResumeApi(MerchantAPIView):
    @_transition_schema("resume", "Paused → active.")
    def post(self, request: Request, promotion_id: str) -> Response:
        return _transition(self, promotion_id, "promotion.resume", services.promotion_resume)


class PromotionEndApi(MerchantAPIView):
    @_transition_schema("end", "Active or paused → ended, for good.")
    def post(self, request: Request, promotion_id: str) -> Response:
        return _transition(self, promotion_id, "promotion.end", services.promotion_end)

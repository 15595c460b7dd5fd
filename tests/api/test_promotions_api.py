"""Promotions through the merchant API: create, update, pause, resume, end, list, retrieve, stats."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from core.models import AuditLog
from merchants.models import Store
from payments.models import PaymentIntent
from payments.promotion_stats import promotion_stats
from rewards.models import Benefit, Promotion, PromotionUse
from tests.api.conftest import Api, World, agreement_body, idem, new_api
from tests.factories import CardFactory, MemberBankFactory, MerchantFactory, make_benefit

pytestmark = pytest.mark.django_db


def _in(days: float) -> int:
    return int((timezone.now() + dt.timedelta(days=days)).timestamp())


def body(kind: str = "amount_off", **fields: Any) -> dict[str, Any]:
    benefit: dict[str, dict[str, Any]] = {
        "amount_off": {"amount_off": 1000},
        "percent_off": {"percent_off": "20", "max_discount": 3000},
        "points_multiplier": {"multiplier": "2"},
        "random_off": {"random_min": 100, "random_max": 900, "random_mean": 300},
        "cashback_points": {"cashback_rate": "0.05"},
        "frequency_reward": {"frequency_count": 5},
    }
    return {"name": f"{kind} offer", "kind": kind, **benefit[kind], "budget": 100_000, "ends_at": _in(30), **fields}


def create(api: Api, **fields: Any) -> dict[str, Any]:
    status, out = api.post("promotions", body(**fields), key=idem())
    assert status == 201, out
    return out


def quote(world: World, api: Api | None = None, amount: int = 10_000, **extra: Any) -> dict[str, Any]:
    status, out = (api or world.api).post(
        "payments/quote",
        {"amount": amount, "currency": "CNY", "payment_method": {"type": "card_token", "token": world.card.token}}
        | extra,
    )
    assert status == 200, out
    return out


def applied(out: dict[str, Any]) -> list[str]:
    return [line["promotion"] for line in out["promotions"]]


def reasons(out: dict[str, Any]) -> dict[str, str]:
    return {line["promotion"]: line["reason"] for line in out["not_applied"]}


# --- create -----------------------------------------------------------------------------------------------------------


def test_create_amount_off_with_conditions_and_read_it_back(world: World) -> None:
    Store.objects.create(merchant=world.merchant, code="SH-001", name="One", livemode=False)
    Store.objects.create(merchant=world.merchant, code="SH-002", name="Two", livemode=False)
    product = world.card.product
    out = create(
        world.api,
        description="Lunch",
        min_spend=5000,
        stores=["SH-002", "SH-001"],
        categories=["dining"],
        card_banks=[world.issuer.code],
        card_products=[f"{world.issuer.code}/{product.code}"],
        card_tiers=["gold", "standard"],
        methods=["card", "payment_code"],
        weekdays=[5, 1, 1],
        hour_from=11,
        hour_to=14,
        first_purchase=True,
        max_uses=500,
        per_cardholder_daily=1,
        per_cardholder=3,
        stacking="stackable",
        priority=5,
    )
    assert out["id"].startswith("promo_")
    assert (out["object"], out["kind"], out["currency"], out["status"]) == ("promotion", "amount_off", "CNY", "active")
    assert (out["amount_off"], out["percent_off"], out["reward_benefit"]) == (1000, None, None)
    assert out["conditions"] == {
        "min_spend": 5000,
        "stores": ["SH-001", "SH-002"],
        "categories": ["dining"],
        "card_banks": [world.issuer.code],
        "card_products": [f"{world.issuer.code}/{product.code}"],
        "card_tiers": ["standard", "gold"],
        "methods": ["card", "payment_code"],
        "weekdays": [1, 5],
        "hour_from": 11,
        "hour_to": 14,
        "first_purchase": True,
        "segment_tags": [],
    }
    assert out["limits"] == {"max_uses": 500, "per_cardholder_daily": 1, "per_cardholder": 3}
    assert (out["budget"], out["budget_used"], out["budget_left"], out["uses"]) == (100_000, 0, 100_000, 0)
    assert (out["stacking"], out["priority"], out["cofunding"], out["livemode"]) == ("stackable", 5, None, False)
    assert out["ends_at"] - out["starts_at"] == pytest.approx(30 * 86400, abs=5)
    status, again = world.api.get(f"promotions/{out['id']}")
    assert (status, again) == (200, out)
    promotion = Promotion.objects.get(public_id=out["id"])
    assert (promotion.merchant, promotion.livemode, promotion.min_spend) == (world.merchant, False, 5000)
    assert {store.code for store in promotion.stores.all()} == {"SH-001", "SH-002"}
    log = AuditLog.objects.get(action="promotion.create", object_id=str(promotion.pk))
    assert log.after is not None
    assert (log.after["budget"], log.after["stores"]) == (100_000, ["SH-001", "SH-002"])
    assert log.bank_id == world.merchant.sponsor_bank_id


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("amount_off", {"amount_off": 1000}),
        ("percent_off", {"percent_off": "20.00", "max_discount": 3000}),
        ("points_multiplier", {"multiplier": "2.00"}),
        ("random_off", {"random_min": 100, "random_max": 900, "random_mean": 300}),
        ("cashback_points", {"cashback_rate": "0.0500"}),
        ("frequency_reward", {"frequency_count": 5}),
    ],
)
def test_create_each_kind(world: World, kind: str, expected: dict[str, Any]) -> None:
    extra: dict[str, Any] = {}
    if kind == "frequency_reward":
        benefit = make_benefit(bank=world.merchant.sponsor_bank, kind=Benefit.Kind.VOUCHER, merchant=world.merchant)
        extra["reward_benefit"] = benefit.pk
        expected = {**expected, "reward_benefit": benefit.pk}
    out = create(world.api, kind=kind, **extra)
    fields = (
        "amount_off", "percent_off", "max_discount", "multiplier", "random_min", "random_max", "random_mean",
        "cashback_rate", "frequency_count", "reward_benefit",
    )  # fmt: skip
    assert {name: out[name] for name in fields} == {name: expected.get(name) for name in fields}
    assert Promotion.objects.get(public_id=out["id"]).kind == kind


def test_a_created_amount_off_prices_the_quote(world: World) -> None:
    out = create(world.api, min_spend=5000)
    priced = quote(world)
    assert (priced["discount"], priced["amount_payable"], applied(priced)) == (1000, 9000, [out["id"]])
    assert reasons(quote(world, amount=4999)) == {out["id"]: "min_spend"}


# --- validation -------------------------------------------------------------------------------------------------------

REFUSALS = [
    ("amount_off", {"amount_off": 0}, "amount_off"),
    ("amount_off", {"amount_off": None}, "amount_off"),
    ("amount_off", {"percent_off": "10"}, "percent_off"),
    ("amount_off", {"max_discount": 500}, "max_discount"),
    ("percent_off", {"percent_off": "100"}, "percent_off"),
    ("percent_off", {"percent_off": "0"}, "percent_off"),
    ("percent_off", {"max_discount": 0}, "max_discount"),
    ("points_multiplier", {"multiplier": "1"}, "multiplier"),
    ("points_multiplier", {"currency": "HKD"}, "currency"),
    ("cashback_points", {"currency": "JPY"}, "currency"),
    ("random_off", {"random_min": 500, "random_max": 500, "random_mean": None}, "random_max"),
    ("random_off", {"random_mean": 900}, "random_mean"),
    ("random_off", {"random_mean": 50}, "random_mean"),
    ("random_off", {"random_min": -1}, "random_min"),
    ("random_off", {"random_max": None}, "random_max"),
    ("cashback_points", {"cashback_rate": "1.5"}, "cashback_rate"),
    ("cashback_points", {"cashback_rate": "0"}, "cashback_rate"),
    ("frequency_reward", {"frequency_count": 1, "reward_benefit": 10**9}, "frequency_count"),
    ("frequency_reward", {"reward_benefit": 10**9}, "reward_benefit"),
    ("frequency_reward", {}, "reward_benefit"),
    ("amount_off", {"currency": "XXX"}, "currency"),
    ("amount_off", {"budget": 0}, "budget"),
    ("amount_off", {"min_spend": -1}, "min_spend"),
    ("amount_off", {"max_uses": 0}, "max_uses"),
    ("amount_off", {"per_cardholder_daily": 0}, "per_cardholder_daily"),
    ("amount_off", {"per_cardholder": 0}, "per_cardholder"),
    ("amount_off", {"starts_at": _in(10), "ends_at": _in(5)}, "ends_at"),
    ("amount_off", {"starts_at": _in(-10), "ends_at": _in(-5)}, "ends_at"),
    ("amount_off", {"weekdays": [0]}, "weekdays"),
    ("amount_off", {"weekdays": [8]}, "weekdays"),
    ("amount_off", {"hour_from": 10, "hour_to": 10}, "hour_to"),
    ("amount_off", {"hour_to": 25}, "hour_to"),
    ("amount_off", {"hour_from": 24}, "hour_from"),
    ("amount_off", {"categories": ["casino"]}, "categories"),
    ("amount_off", {"methods": ["card_token"]}, "methods"),
    ("amount_off", {"card_tiers": ["black"]}, "card_tiers"),
    ("amount_off", {"stores": ["NOPE"]}, "stores"),
    ("amount_off", {"card_banks": ["NOPE"]}, "card_banks"),
    ("amount_off", {"card_products": ["NOPE/NOPE"]}, "card_products"),
    ("amount_off", {"card_products": ["no-slash"]}, "card_products"),
    ("amount_off", {"cofunder": "NOPE", "cofunder_share": "0.5"}, "cofunder"),
    ("amount_off", {"cofunder_share": "0.5"}, "cofunder"),
    ("amount_off", {"priority": 40000}, "priority"),
]


@pytest.mark.parametrize(("kind", "fields", "param"), REFUSALS)
def test_each_refusal_names_its_field(world: World, kind: str, fields: dict[str, Any], param: str) -> None:
    status, out = world.api.post("promotions", body(kind, **fields), key=idem())
    assert (status, out["error"]["param"]) == (422, param), out
    assert set(out["error"]) == {"type", "code", "message", "param"}
    assert not Promotion.objects.exists()


def test_references_must_be_the_merchants_own_in_the_same_mode(world: World, other: World) -> None:
    bank = MemberBankFactory()
    Store.objects.create(merchant=world.merchant, code="LIVE-1", name="Live", livemode=True)
    Store.objects.create(merchant=other.merchant, code="THEIRS", name="Theirs", livemode=False)
    theirs = make_benefit(bank=other.merchant.sponsor_bank, kind=Benefit.Kind.VOUCHER, merchant=other.merchant)
    draft = make_benefit(bank=bank, funding_merchant=world.merchant, status=Benefit.Status.DRAFT)
    reward = {"kind": "frequency_reward", "frequency_count": 3, "amount_off": None}
    cases = [
        ({"stores": ["LIVE-1"]}, "stores"),
        ({"stores": ["THEIRS"]}, "stores"),
        ({**reward, "reward_benefit": theirs.pk}, "reward_benefit"),
        ({**reward, "reward_benefit": draft.pk}, "reward_benefit"),
        ({"cofunder": bank.code, "cofunder_share": "0"}, "cofunder_share"),
        ({"cofunder": bank.code, "cofunder_share": "1.5"}, "cofunder_share"),
        ({"cofunder": bank.code}, "cofunder_share"),
    ]  # fmt: skip
    for fields, param in cases:
        status, out = world.api.post("promotions", body(**fields), key=idem())
        assert (status, out["error"]["param"]) == (422, param), (fields, out)
    funded = make_benefit(bank=bank, funding_merchant=world.merchant)
    out = create(world.api, kind="frequency_reward", frequency_count=3, amount_off=None, reward_benefit=funded.pk)
    assert out["reward_benefit"] == funded.pk
    assert Promotion.objects.count() == 1


def test_malformed_bodies_are_400(world: World) -> None:
    for fields, param in (
        ({"amount_off": "1000"}, "amount_off"),
        ({"kind": "free_lunch"}, "kind"),
        ({"name": "   "}, "name"),
        ({"colour": "red"}, "colour"),
        ({"stores": "SH-001"}, "stores"),
    ):
        status, out = world.api.post("promotions", body() | fields, key=idem())
        assert (status, out["error"]["param"]) == (400, param), out
    status, out = world.api.post("promotions", {"name": "x"}, key=idem())
    assert status == 400
    assert not Promotion.objects.exists()


# --- update -----------------------------------------------------------------------------------------------------------


def test_update_changes_what_is_given_and_keeps_the_rest(world: World) -> None:
    out = create(world.api, max_uses=10, per_cardholder=2, min_spend=100)
    status, updated = world.api.post(
        f"promotions/{out['id']}", {"name": "Renamed", "amount_off": 1500, "max_uses": None}, key=idem()
    )
    assert status == 200, updated
    assert (updated["name"], updated["amount_off"], updated["limits"]["max_uses"]) == ("Renamed", 1500, None)
    assert (updated["limits"]["per_cardholder"], updated["conditions"]["min_spend"]) == (2, 100)
    assert quote(world)["discount"] == 1500
    log = AuditLog.objects.get(action="promotion.update")
    assert log.before is not None
    assert log.after is not None
    assert (log.before["amount_off"], log.after["amount_off"]) == (1000, 1500)


def test_update_rules_for_a_running_promotion(world: World) -> None:
    out = create(world.api, max_uses=10)
    Promotion.objects.filter(public_id=out["id"]).update(committed=40_000, uses=6)
    for fields, param, code in (
        ({"budget": 39_999}, "budget", "budget_below_used"),
        ({"max_uses": 5}, "max_uses", "max_uses_below_used"),
        ({"kind": "percent_off"}, "kind", "immutable_field"),
        ({"currency": "HKD"}, "currency", "immutable_field"),
        ({"percent_off": "10"}, "percent_off", "field_not_for_kind"),
        ({"ends_at": _in(-1)}, "ends_at", "validation_failed"),
    ):
        status, error = world.api.post(f"promotions/{out['id']}", fields, key=idem())
        assert (status, error["error"]["param"], error["error"]["code"]) == (422, param, code), error
    status, updated = world.api.post(f"promotions/{out['id']}", {"budget": 40_000, "max_uses": 6}, key=idem())
    assert status == 200
    figures = (updated["budget"], updated["budget_used"], updated["budget_left"], updated["uses"])
    assert figures == (40_000, 40_000, 0, 6)
    promotion = Promotion.objects.get(public_id=out["id"])
    assert (promotion.committed, promotion.uses, promotion.name) == (40_000, 6, "amount_off offer")


def test_a_store_list_change_reaches_the_engine_at_once(world: World) -> None:
    Store.objects.create(merchant=world.merchant, code="A", name="A", livemode=False)
    Store.objects.create(merchant=world.merchant, code="B", name="B", livemode=False)
    out = create(world.api, stores=["A"])
    assert reasons(quote(world, store="B")) == {out["id"]: "store"}  # compiled and cached now
    status, _ = world.api.post(f"promotions/{out['id']}", {"stores": ["A", "B"]}, key=idem())
    assert status == 200
    assert applied(quote(world, store="B")) == [out["id"]]


# --- pause, resume, end -----------------------------------------------------------------------------------------------


def test_pause_takes_it_off_the_quote_and_resume_brings_it_back(world: World) -> None:
    out = create(world.api)
    assert applied(quote(world)) == [out["id"]]
    status, paused = world.api.post(f"promotions/{out['id']}/pause", key=idem())
    assert (status, paused["status"]) == (200, "paused")
    priced = quote(world)
    assert (priced["discount"], priced["promotions"], priced["not_applied"]) == (0, [], [])
    status, error = world.api.post(f"promotions/{out['id']}/pause", key=idem())
    assert (status, error["error"]["code"]) == (409, "promotion_unexpected_state")
    status, resumed = world.api.post(f"promotions/{out['id']}/resume", key=idem())
    assert (status, resumed["status"]) == (200, "active")
    assert quote(world)["discount"] == 1000
    logs = AuditLog.objects.filter(object_type="rewards.promotion", object_id=str(Promotion.objects.get().pk))
    actions = list(logs.order_by("pk").values_list("action", flat=True))
    assert actions == ["promotion.create", "promotion.pause", "promotion.resume"]


def test_ended_is_final(world: World) -> None:
    out = create(world.api)
    status, ended = world.api.post(f"promotions/{out['id']}/end", key=idem())
    assert (status, ended["status"]) == (200, "ended")
    assert quote(world)["promotions"] == []
    for path, payload in (("resume", {}), ("pause", {}), ("end", {}), ("", {"name": "again"})):
        status, error = world.api.post(f"promotions/{out['id']}" + (f"/{path}" if path else ""), payload, key=idem())
        assert (status, error["error"]["code"]) == (409, "promotion_ended"), path
    assert Promotion.objects.get().status == "ended"


def test_list_filters_by_status_and_paginates(world: World) -> None:
    ids = [create(world.api, name=f"p{n}")["id"] for n in range(3)]
    world.api.post(f"promotions/{ids[0]}/pause", key=idem())
    status, listed = world.api.get("promotions", {"limit": 2})
    assert (status, [row["id"] for row in listed["data"]], listed["has_more"]) == (200, ids[:0:-1], True)
    _, rest = world.api.get("promotions", {"limit": 2, "starting_after": ids[1]})
    assert ([row["id"] for row in rest["data"]], rest["has_more"]) == ([ids[0]], False)
    _, paused = world.api.get("promotions", {"status": "paused"})
    assert [row["id"] for row in paused["data"]] == [ids[0]]


# --- co-funding -------------------------------------------------------------------------------------------------------


def test_a_cofunded_promotion_waits_for_the_bank(world: World) -> None:
    bank = MemberBankFactory()
    out = create(world.api, cofunder=bank.code, cofunder_share="0.5")
    assert out["cofunding"] == {"bank": bank.code, "share": "0.5000", "status": "pending"}
    priced = quote(world)
    assert (priced["discount"], reasons(priced)) == (0, {out["id"]: "cofunding_pending"})
    # The bank approves it in the admin (built elsewhere): here, the row as that approval leaves it.
    Promotion.objects.filter(public_id=out["id"]).update(cofunding="approved", updated_at=timezone.now())
    assert quote(world)["discount"] == 1000
    status, same = world.api.post(f"promotions/{out['id']}", {"name": "Same terms", "budget": 90_000}, key=idem())
    assert (status, same["cofunding"]["status"]) == (200, "approved")
    status, changed = world.api.post(f"promotions/{out['id']}", {"cofunder_share": "0.6"}, key=idem())
    assert (status, changed["cofunding"]) == (200, {"bank": bank.code, "share": "0.6000", "status": "pending"})
    assert quote(world)["discount"] == 0
    Promotion.objects.filter(public_id=out["id"]).update(cofunding="approved", updated_at=timezone.now())
    _, raised = world.api.post(f"promotions/{out['id']}", {"budget": 200_000}, key=idem())
    assert raised["cofunding"]["status"] == "pending"  # the bank's part grows with the budget
    _, other_bank = world.api.post(f"promotions/{out['id']}", {"cofunder": world.issuer.code}, key=idem())
    assert other_bank["cofunding"] == {"bank": world.issuer.code, "share": "0.6000", "status": "pending"}
    _, dropped = world.api.post(f"promotions/{out['id']}", {"cofunder": None, "cofunder_share": None}, key=idem())
    assert dropped["cofunding"] is None
    assert quote(world)["discount"] == 1000


# --- the segment rule -------------------------------------------------------------------------------------------------


def test_a_segment_only_offer_is_refused(world: World) -> None:
    status, error = world.api.post("promotions", body(segment_tags=["dining"]), key=idem())
    assert (status, error["error"]["code"], error["error"]["param"]) == (409, "segment_only_offer", "segment_tags")
    short = create(world.api, ends_at=_in(10))
    status, error = world.api.post("promotions", body(segment_tags=["dining"], ends_at=_in(20)), key=idem())
    assert (status, error["error"]["code"]) == (409, "segment_only_offer")  # the cover ends too early
    live = new_api(world.merchant, mode="live")
    status, error = live.post("promotions", body(segment_tags=["dining"], ends_at=_in(5)), key=idem())
    assert (status, error["error"]["code"]) == (409, "segment_only_offer")  # the cover is of the other mode
    targeted = create(world.api, segment_tags=["dining"], ends_at=_in(5))
    assert targeted["conditions"]["segment_tags"] == ["dining"]
    assert Promotion.objects.count() == 2
    # The cover cannot go while the targeted promotion relies on it.
    for action in ("pause", "end"):
        status, error = world.api.post(f"promotions/{short['id']}/{action}", key=idem())
        assert (status, error["error"]["code"]) == (409, "segment_offers_need_cover"), action
    status, error = world.api.post(f"promotions/{short['id']}", {"ends_at": _in(3)}, key=idem())
    assert (status, error["error"]["code"]) == (409, "segment_offers_need_cover")
    status, error = world.api.post(f"promotions/{short['id']}", {"segment_tags": ["x"]}, key=idem())
    assert (status, error["error"]["code"]) == (409, "segment_only_offer")  # it would need a cover itself
    assert Promotion.objects.get(public_id=short["id"]).segment_tags == []
    # Pausing the targeted one first lets the cover go; it cannot come back alone.
    assert world.api.post(f"promotions/{targeted['id']}/pause", key=idem())[0] == 200
    assert world.api.post(f"promotions/{short['id']}/pause", key=idem())[0] == 200
    status, error = world.api.post(f"promotions/{targeted['id']}/resume", key=idem())
    assert (status, error["error"]["code"]) == (409, "segment_only_offer")
    assert world.api.post(f"promotions/{short['id']}/resume", key=idem())[0] == 200
    assert world.api.post(f"promotions/{targeted['id']}/resume", key=idem())[0] == 200


def test_a_cover_waiting_for_cofunding_does_not_count(world: World) -> None:
    create(world.api, cofunder=world.issuer.code, cofunder_share="0.5")
    status, error = world.api.post("promotions", body(segment_tags=["dining"], ends_at=_in(5)), key=idem())
    assert (status, error["error"]["code"]) == (409, "segment_only_offer")


# --- who sees what ----------------------------------------------------------------------------------------------------


def test_a_promotion_is_invisible_to_every_other_merchant(world: World, other: World) -> None:
    out = create(world.api)
    theirs = create(other.api, name="theirs")
    _, listed = other.api.get("promotions")
    assert [row["id"] for row in listed["data"]] == [theirs["id"]]
    pid = out["id"]
    for status, error in (
        other.api.get(f"promotions/{pid}"),
        other.api.get(f"promotions/{pid}/stats"),
        other.api.post(f"promotions/{pid}", {"budget": 1}, key=idem()),
        other.api.post(f"promotions/{pid}/pause", key=idem()),
        other.api.post(f"promotions/{pid}/resume", key=idem()),
        other.api.post(f"promotions/{pid}/end", key=idem()),
        other.api.get("promotions", {"starting_after": pid}),
    ):
        assert (status, error["error"]["code"]) == (404, "resource_missing")
    promotion = Promotion.objects.get(public_id=pid)
    assert (promotion.budget, promotion.status) == (100_000, "active")
    assert applied(quote(world)) == [pid]
    assert applied(quote(other, other.api)) == [theirs["id"]]  # each merchant's quote prices its own only


def test_test_and_live_promotions_are_apart(world: World) -> None:
    test_promo = create(world.api)
    live = new_api(world.merchant, mode="live")
    live_promo = create(live, name="live")
    assert (live_promo["livemode"], test_promo["livemode"]) == (True, False)
    assert [row["id"] for row in live.get("promotions")[1]["data"]] == [live_promo["id"]]
    assert [row["id"] for row in world.api.get("promotions")[1]["data"]] == [test_promo["id"]]
    assert live.get(f"promotions/{test_promo['id']}")[0] == 404
    assert world.api.post(f"promotions/{live_promo['id']}/pause", key=idem())[0] == 404
    assert applied(quote(world)) == [test_promo["id"]]


def test_a_read_only_key_reads_but_never_writes(world: World) -> None:
    out = create(world.api)
    reader = new_api(world.merchant, scope="read")
    assert reader.get(f"promotions/{out['id']}")[0] == 200
    assert reader.get(f"promotions/{out['id']}/stats")[0] == 200
    for path, payload in (
        ("promotions", body()),
        (f"promotions/{out['id']}", {"budget": 5}),
        (f"promotions/{out['id']}/pause", {}),
        (f"promotions/{out['id']}/end", {}),
    ):
        status, error = reader.post(path, payload, key=idem())
        assert (status, error["error"]["type"]) == (403, "permission_error"), path
    assert Promotion.objects.get().status == "active"
    assert Promotion.objects.count() == 1


def test_a_keyed_create_is_replayed_not_repeated(world: World) -> None:
    key, same = idem(), body()
    first = world.api.client.post("/api/v1/promotions", same, format="json", HTTP_IDEMPOTENCY_KEY=key)
    again = world.api.client.post("/api/v1/promotions", same, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]
    assert again["Idempotent-Replayed"] == "true"
    assert Promotion.objects.count() == 1
    status, error = world.api.post("promotions", same | {"budget": 5}, key=key)
    assert (status, error["error"]["code"]) == (409, "idempotency_key_reused")
    pid = first.json()["id"]
    pause_key = idem()
    assert world.api.post(f"promotions/{pid}/pause", key=pause_key)[0] == 200
    status, replayed = world.api.post(f"promotions/{pid}/pause", key=pause_key)
    assert (status, replayed["status"]) == (200, "paused")  # the stored answer, not a 409
    assert AuditLog.objects.filter(action="promotion.pause").count() == 1


# --- stats ------------------------------------------------------------------------------------------------------------


def _paid(world: World, at: dt.datetime, amount: int, **fields: Any) -> PaymentIntent:
    values: dict[str, Any] = {
        "merchant": world.merchant,
        "cardholder": world.card.cardholder,
        "card": world.card,
        "issuer": world.issuer,
        "acquirer": world.merchant.sponsor_bank,
        "amount": amount,
        "amount_captured": amount,
        "currency": "CNY",
        "status": "succeeded",
        "livemode": False,
        "captured_at": at,
        "created_at": at,  # made when captured, as the capture window has it
        **fields,
    }
    return PaymentIntent.objects.create(**values)


def test_stats_against_the_weeks_before(world: World) -> None:
    now = timezone.now().replace(microsecond=0)
    start = now - dt.timedelta(days=12)
    end = start + dt.timedelta(days=10)  # ended two days ago: 10 days long, so 2 weeks of baseline
    promotion = Promotion.objects.create(
        merchant=world.merchant, livemode=False, name="Past", kind="amount_off", amount_off=500,
        budget=10_000, committed=700, uses=2, starts_at=start, ends_at=end,
    )  # fmt: skip
    day = dt.timedelta(days=1)
    for at, amount, extra in (
        (start - 14 * day, 1000, {}),  # the baseline's first moment
        (start - 10 * day, 2000, {}),
        (start - 3 * day, 3000, {}),
        (start - dt.timedelta(seconds=1), 2000, {"amount_refunded": 500, "amount_refund_reserved": 500}),
        (start - 15 * day, 9999, {}),  # before the baseline
        (start, 4000, {}),
        (start + 2 * day, 2000, {}),
        (start + 5 * day, 1500, {"amount_refunded": 1500, "amount_refund_reserved": 1500}),
        (start + 8 * day, 2500, {}),
        (end - dt.timedelta(seconds=1), 1500, {}),
        (end, 7777, {}),  # after the campaign
        (start + day, 8888, {"livemode": True}),  # the other mode
        (start + day, 8888, {"currency": "HKD"}),  # another currency
        (start + day, 8888, {"amount_captured": 0, "status": "canceled"}),  # never captured
        (start + day, 8888, {"merchant": MerchantFactory()}),  # another merchant
    ):
        _paid(world, at, amount, **extra)
    for payment, status, discount, returned in (
        ("pay_a", "consumed", 500, 0),
        ("pay_b", "consumed", 300, 100),
        ("pay_c", "released", 500, 0),
    ):
        PromotionUse.objects.create(
            promotion=promotion, cardholder=world.card.cardholder, payment=payment, day=start.date(),
            status=status, discount=discount, cost=discount, returned_cost=returned,
        )  # fmt: skip
    status, out = world.api.get(f"promotions/{promotion.public_id}/stats")
    assert status == 200
    assert out == {
        "object": "promotion.stats",
        "promotion": promotion.public_id,
        "livemode": False,
        "currency": "CNY",
        "min_cohort": 20,
        "uses": 2,
        "budget": 10_000,
        "budget_used": 700,
        "budget_left": 9_300,
        "given": {
            "uses": 2, "discount": 800, "points": 0, "cost": 800, "cofunder_cost": 0, "returned_cost": 100,
            "returned_points": 0, "cardholders": None,
        },
        "campaign": {
            "start": int(start.timestamp()), "end": int(end.timestamp()), "days": "10.0000", "count": 5,
            "volume": 10_000, "average_ticket": 2_000, "count_per_day": "0.5000", "volume_per_day": 1_000,
            "cardholders": None,
        },
        "baseline": {
            "start": int((start - 14 * day).timestamp()), "end": int(start.timestamp()), "days": "14.0000",
            "count": 4, "volume": 7_500, "average_ticket": 1_875, "count_per_day": "0.2857", "volume_per_day": 535,
            "cardholders": None, "weeks": 2,
        },
        "lift": {"count": "1.7500", "volume": "1.8667"},  # 0.5 / (4/14); 1000 / (7500/14)
    }  # fmt: skip


def test_stats_of_a_running_campaign_count_to_now_and_show_cohorts_of_twenty(world: World) -> None:
    now = timezone.now().replace(microsecond=0)
    start = now - dt.timedelta(days=3)
    promotion = Promotion.objects.create(
        merchant=world.merchant, livemode=False, name="Running", kind="amount_off", amount_off=500,
        budget=10_000, starts_at=start, ends_at=now + dt.timedelta(days=30),
    )  # fmt: skip
    for n in range(20):
        card = CardFactory(product=world.card.product)
        _paid(world, start + dt.timedelta(hours=n), 1000, cardholder=card.cardholder, card=card)
    out = promotion_stats(promotion=promotion, now=now)
    assert (out["campaign"]["count"], out["campaign"]["cardholders"], out["campaign"]["days"]) == (20, 20, "3.0000")
    assert (out["campaign"]["count_per_day"], out["campaign"]["volume_per_day"]) == ("6.6667", 6_666)
    assert (out["baseline"]["weeks"], out["baseline"]["count"], out["baseline"]["cardholders"]) == (1, 0, None)
    assert out["lift"] == {"count": None, "volume": None}  # no baseline to compare with
    not_started = Promotion.objects.create(
        merchant=world.merchant, livemode=False, name="Later", kind="amount_off", amount_off=500,
        budget=10_000, starts_at=now + dt.timedelta(days=1), ends_at=now + dt.timedelta(days=30),
    )  # fmt: skip
    later = promotion_stats(promotion=not_started, now=now)
    assert (later["campaign"]["days"], later["campaign"]["count_per_day"], later["baseline"]["weeks"]) == (
        "0.0000",
        None,
        1,
    )
    assert later["baseline"]["count"] == 20


def test_stats_use_two_queries(world: World, django_assert_num_queries: Any) -> None:
    promotion = Promotion.objects.create(
        merchant=world.merchant, livemode=False, name="Q", kind="amount_off", amount_off=500, budget=10_000,
        starts_at=timezone.now() - dt.timedelta(days=1), ends_at=timezone.now() + dt.timedelta(days=1),
    )  # fmt: skip
    with django_assert_num_queries(2):
        promotion_stats(promotion=promotion, now=timezone.now())


def test_decimal_input_takes_strings_and_numbers(world: World) -> None:
    out = create(world.api, kind="percent_off", percent_off=15, max_discount=None)
    assert (out["percent_off"], out["max_discount"]) == ("15.00", None)
    assert Promotion.objects.get().percent_off == Decimal("15")


def test_a_frequency_reward_issues_its_voucher_in_live_mode_only(world: World) -> None:
    from rewards.models import Voucher

    benefit = make_benefit(
        bank=world.merchant.sponsor_bank, kind=Benefit.Kind.VOUCHER, merchant=world.merchant, stock_total=5
    )
    out = create(world.api, kind="frequency_reward", frequency_count=2, amount_off=None, reward_benefit=benefit.pk)
    for _ in range(2):
        status, paid = world.api.post(
            "payments",
            {"amount": 1000, "currency": "CNY", "confirm": True,
             "payment_method": {"type": "card_token", "token": world.card.token}},
            key=idem(),
        )  # fmt: skip
        assert (status, paid["status"]) == (201, "succeeded"), paid
    assert not Voucher.objects.exists()  # vouchers are live objects: a sandbox payment never takes one
    benefit.refresh_from_db()
    assert benefit.stock_left == 5
    assert Promotion.objects.get(public_id=out["id"]).committed == 0
    live = new_api(world.merchant, mode="live")
    live_promo = create(live, kind="frequency_reward", frequency_count=2, amount_off=None, reward_benefit=benefit.pk)
    lines = []
    for _ in range(2):
        status, paid = live.post("payments", agreement_body(world.card, world.merchant, 1000), key=idem())
        assert (status, paid["status"]) == (201, "succeeded"), paid
        lines.append(paid["promotions"])
    assert [line[0]["voucher"] for line in lines] == [False, True]
    voucher = Voucher.objects.get()
    assert (voucher.benefit_id, voucher.cardholder_id) == (benefit.pk, world.card.cardholder_id)
    benefit.refresh_from_db()
    assert benefit.stock_left == 4
    assert Promotion.objects.get(public_id=live_promo["id"]).committed > 0

"""Rewards: the cardholder portal's points pages — every programme's balance at once with their total worth, points
expiring, statements, and exchanging points between the cardholder's own programmes — and its benefit pages: the
catalogue this cardholder may redeem from, a benefit's page with its live price preview and redemption, and their
vouchers with a QR code, cancelled within the window."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.api import error_body
from core.errors import MengkaError
from core.qr import qr_svg
from core.text import id_or_none
from members import selectors as members_selectors
from members.models import Cardholder, PointsProgram
from members.portal import cardholder_required

from . import selectors, services
from .forms import BenefitFilterForm, BenefitQuoteForm, BenefitRedeemForm, ExchangeForm, ExchangeQuoteForm
from .models import Benefit
from .services import today

STATEMENT_PAGE = 20


@cardholder_required
def points(request: HttpRequest, cardholder: Cardholder) -> HttpResponse:
    on = today()
    within_30 = {
        row.program_id: row.points
        for row in selectors.points_expiring(cardholder_id=cardholder.pk, within_days=30, on=on)
    }
    expiring = [
        (row, within_30.get(row.program_id, 0))
        for row in selectors.points_expiring(cardholder_id=cardholder.pk, within_days=90, on=on)
    ]
    balances = selectors.cardholder_balances(cardholder_id=cardholder.pk, on=on)
    return render(
        request,
        "rewards/points.html",
        {"balances": balances, "total_cny": selectors.wallet_total_cny(balances), "expiring": expiring},
    )


@cardholder_required
def points_statement(request: HttpRequest, cardholder: Cardholder, program_id: int) -> HttpResponse:
    """One programme's movements, newest first, a page at a time (keyset: `?after=<entry id>`), each naming the
    merchant, benefit or programme behind it. Only the signed-in cardholder's own account: another's, or a programme
    they hold no points in, is not found."""
    wallet = selectors.cardholder_wallet(cardholder_id=cardholder.pk, program_id=program_id)
    if wallet is None:
        raise Http404("No points in this programme.")
    after_id = id_or_none(request.GET.get("after"))
    page = selectors.account_statement(account_id=wallet.pk, after_id=after_id, limit=STATEMENT_PAGE, newest_first=True)
    page = selectors.name_sources(page, program_id=program_id)
    return render(
        request,
        "rewards/points_statement.html",
        {"wallet": wallet, "program": wallet.program, "page": page, "first_page": after_id is None},
    )


def _cny(units: int) -> Decimal:
    """Ledger currency units (ten-thousandths of a yuan) as yuan, to four places: no rounding happens."""
    return services.units_cny(units)


def _policy() -> Any:
    try:
        return services.exchange_policy_in_force()
    except MengkaError:
        return None


@cardholder_required
@require_http_methods(["GET", "POST"])
def points_exchange(request: HttpRequest, cardholder: Cardholder) -> HttpResponse:
    """Exchange points between two of the cardholder's own programmes. The page carries a key made when it renders,
    so a double submit exchanges once; a refusal is shown on the form and moves nothing."""
    programs = selectors.exchange_programs(cardholder=cardholder)
    if request.method == "POST":
        form = ExchangeForm(request.POST, programs=programs)
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.points_exchange(
                    cardholder_id=cardholder.pk,
                    from_program=data["from_program"],
                    to_program=data["to_program"],
                    amount=data["amount"],
                    idempotency_key=f"portal:exchange:{cardholder.pk}:{data['idempotency_key']}",
                    actor=request.user,
                )
            except MengkaError as exc:
                form.add_error(exc.param if exc.param in form.fields else None, exc.message)
            else:
                messages.success(
                    request,
                    _("Exchanged %(amount)d %(source)s points.")
                    % {"amount": data["amount"], "source": data["from_program"].local_name},
                )
                return redirect("rewards_portal:points")
        status = 400
    else:
        form = ExchangeForm(initial={"idempotency_key": uuid.uuid4()}, programs=programs)
        status = 200
    policy = _policy()
    context = {
        "form": form,
        "policy": policy,
        "fee_percent": f"{(policy.fee_rate * 100).normalize():f}" if policy is not None else "",
        "programs": programs,
        "balances": selectors.cardholder_balances(cardholder_id=cardholder.pk),
    }
    return render(request, "rewards/points_exchange.html", context, status=status)


def _error(status: int, message: str, code: str, param: str | None = None) -> JsonResponse:
    return JsonResponse(error_body("invalid_request_error", code, message, param), status=status)


@cardholder_required
@require_GET
def points_exchange_quote(request: HttpRequest, cardholder: Cardholder) -> JsonResponse:
    """The exchange page's live preview: `exchange_quote` for `from_program`, `to_program` and `amount`, as JSON.
    Input that is not a number or names a programme not the cardholder's own is a 400; a quote the rules refuse (under
    the minimum, too few points out) answers with the error's own status and message."""
    form = ExchangeQuoteForm(request.GET, programs=selectors.exchange_programs(cardholder=cardholder))
    if not form.is_valid():
        param, errors = next(iter(form.errors.items()))
        return _error(400, str(errors[0]), "invalid_request", None if param == "__all__" else param)
    data = form.cleaned_data
    try:
        quote = services.exchange_quote(
            from_program=data["from_program"], to_program=data["to_program"], amount=data["amount"]
        )
    except MengkaError as exc:
        return _error(exc.http_status, exc.message, exc.code, exc.param)
    return JsonResponse(
        {
            "amount": data["amount"],
            "rate": f"{quote.rate.normalize():f}",
            "points_out": quote.points_out,
            "fee_rate": str(quote.fee_rate),
            "value_cny": str(_cny(quote.payer_units)),
            "fee_cny": str(_cny(quote.fee_units)),
            "result_value_cny": str(_cny(quote.payee_units)),
            "to_unit": data["to_program"].unit_code,
        }
    )


# --- benefits and vouchers (docs/benefits.md) ------------------------------------------------------------------------


@cardholder_required
@require_GET
def benefits(request: HttpRequest, cardholder: Cardholder) -> HttpResponse:
    """The catalogue: the benefits this cardholder may redeem now with one of their cards, with the quota and stock
    left; `?kind=` narrows it to one kind (an unknown kind is shown as an error over the whole catalogue)."""
    form = BenefitFilterForm(request.GET, kinds=list(Benefit.Kind.choices))
    offers = selectors.benefits_for(cardholder_id=cardholder.pk)
    kind = form.cleaned_data["kind"] if form.is_valid() else ""
    if kind:
        offers = [offer for offer in offers if offer.benefit.kind == kind]
    return render(
        request, "rewards/benefits.html", {"form": form, "offers": offers}, status=200 if form.is_valid() else 400
    )


def _offer_of(cardholder: Cardholder, benefit_id: int) -> selectors.BenefitOffer | None:
    offers = selectors.benefits_for(cardholder_id=cardholder.pk, benefit_id=benefit_id)
    return offers[0] if offers else None


def _mix_programs(benefit: Benefit, cardholder: Cardholder) -> list[PointsProgram]:
    """The programmes the cardholder chooses a mix from: theirs, for a CNY price; none for a price in one programme's
    points (it is that programme's, exactly) or a free privilege."""
    return selectors.exchange_programs(cardholder=cardholder) if benefit.pricing == Benefit.Pricing.CNY else []


def _mix(form: BenefitQuoteForm, benefit: Benefit) -> dict[int, int | None]:
    if benefit.pricing == Benefit.Pricing.POINTS:
        assert benefit.price_program_id is not None
        return {benefit.price_program_id: benefit.price_points}
    return form.points()


@cardholder_required
@require_http_methods(["GET", "POST"])
def benefit_detail(request: HttpRequest, cardholder: Cardholder, benefit_id: int) -> HttpResponse:
    """A benefit's page: what it is, its terms, price and eligibility, and — when one of the cardholder's cards may
    redeem it now — the redemption, with the key made when the page rendered (a double submit redeems once). A
    refusal is shown on the form and leaves nothing written."""
    if request.method == "POST":
        benefit = selectors.benefit_published(benefit_id=benefit_id)
    else:
        benefit = selectors.benefit_on_offer(benefit_id=benefit_id)
    offer = _offer_of(cardholder, benefit.pk)
    cards = list(members_selectors.cards_of(cardholder))
    eligible = set(offer.card_ids) if offer is not None else set()
    eligible_choices = [
        (card.pk, f"{card.product.local_name} •••• {card.last4}") for card in cards if card.pk in eligible
    ]
    programs = _mix_programs(benefit, cardholder)
    pays_rest = benefit.pricing == Benefit.Pricing.CNY
    status = 200
    if request.method == "POST":
        # Any of the holder's cards is a valid choice here: the service says why one may not redeem it, and a
        # replayed request (the benefit since sold out, the quota since used) still finds its first voucher.
        all_choices = [(card.pk, f"{card.product.local_name} •••• {card.last4}") for card in cards]
        form = BenefitRedeemForm(request.POST, programs=programs, pays_rest=pays_rest, cards=all_choices)
        if form.is_valid():
            data = form.cleaned_data
            try:
                voucher = services.benefit_redeem(
                    cardholder_id=cardholder.pk,
                    card_id=data["card"],
                    benefit_id=benefit.pk,
                    points=_mix(form, benefit),
                    idempotency_key=f"portal:benefit:{cardholder.pk}:{data['idempotency_key']}",
                    actor=request.user,
                )
            except MengkaError as exc:
                form.add_error(exc.param if exc.param in form.fields else None, exc.message)
            else:
                messages.success(
                    request, _("Redeemed: your voucher ending %(hint)s is below.") % {"hint": voucher.code_hint}
                )
                return redirect("rewards_portal:vouchers")
        status = 400
    else:
        form = BenefitRedeemForm(
            initial={"idempotency_key": uuid.uuid4()}, programs=programs, pays_rest=pays_rest, cards=eligible_choices
        )
    context = {
        "benefit": benefit,
        "offer": offer,
        "form": form,
        "program_fields": [form[f"p{program.pk}"] for program in programs],
        "balances": selectors.cardholder_balances(cardholder_id=cardholder.pk) if programs else [],
        "eligible_banks": list(benefit.eligible_banks.all()),
        "eligible_products": list(benefit.eligible_products.all()),
        "stores": list(benefit.stores.all()),
    }
    return render(request, "rewards/benefit_detail.html", context, status=status)


@cardholder_required
@require_GET
def benefit_quote(request: HttpRequest, cardholder: Cardholder, benefit_id: int) -> JsonResponse:
    """The benefit page's live preview: what each programme of the chosen mix pays (`benefit_quote`, the pricing the
    redemption applies), as JSON. A programme not the cardholder's own or a number that is not one is a 400; a mix
    the pricing refuses answers with the error's status and message."""
    benefit = selectors.benefit_on_offer(benefit_id=benefit_id)
    form = BenefitQuoteForm(
        request.GET, programs=_mix_programs(benefit, cardholder), pays_rest=benefit.pricing == Benefit.Pricing.CNY
    )
    if not form.is_valid():
        param, errors = next(iter(form.errors.items()))
        return _error(400, str(errors[0]), "invalid_request", None if param == "__all__" else param)
    try:
        quote = selectors.benefit_quote(benefit_id=benefit.pk, points=_mix(form, benefit))
    except MengkaError as exc:
        return _error(exc.http_status, exc.message, exc.code, exc.param)
    return JsonResponse(
        {
            "lines": [
                {
                    "program_id": line.program_id,
                    "unit": line.unit,
                    "points": line.points,
                    "value_cny": str(_cny(line.value_units)),
                }
                for line in quote.lines
            ],
            "total_value_cny": str(_cny(quote.total_value_units)),
        }
    )


@cardholder_required
@require_GET
def offers(request: HttpRequest, cardholder: Cardholder) -> HttpResponse:
    """Merchants' promotions that apply to one of the cardholder's cards now, grouped by merchant: those for everyone,
    and those picked for them by segment (only while they consent to personalised offers)."""
    return render(request, "rewards/offers.html", {"offers": selectors.offers_for_cardholder(cardholder=cardholder)})


def _grouped(code: str) -> str:
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


@cardholder_required
@require_GET
def vouchers(request: HttpRequest, cardholder: Cardholder) -> HttpResponse:
    """The cardholder's own vouchers, newest first: the code and its QR for the issued ones (the till scans it), the
    state, the validity and terms, and a cancel button while the window is open."""
    now = timezone.now()
    rows = []
    for view in selectors.vouchers_of(cardholder_id=cardholder.pk):
        voucher = view.voucher
        cancel_until = selectors.voucher_cancel_until(voucher)
        issued = voucher.state == voucher.State.ISSUED and voucher.expires_at > now
        rows.append(
            {
                "voucher": voucher,
                "benefit": voucher.benefit,
                "code": _grouped(view.code),
                "qr": qr_svg(view.qr_payload, scale=5) if issued else "",
                "cancel_until": cancel_until if cancel_until is not None and now < cancel_until else None,
            }
        )
    return render(request, "rewards/vouchers.html", {"rows": rows})


@cardholder_required
@require_POST
def voucher_cancel(request: HttpRequest, cardholder: Cardholder, voucher_id: int) -> HttpResponse:
    """Cancels one of the cardholder's own vouchers (another's is not found): the points come back."""
    try:
        voucher = services.voucher_cancel(voucher_id=voucher_id, cardholder_id=cardholder.pk, actor=request.user)
    except MengkaError as exc:
        if exc.http_status == 404:
            raise
        messages.error(request, exc.message)
    else:
        messages.success(
            request, _("Voucher ending %(hint)s cancelled: its points are back.") % {"hint": voucher.code_hint}
        )
    return redirect("rewards_portal:vouchers")

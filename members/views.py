"""Members: the cardholder portal. Views parse input, call one service or selector, render the result."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate, login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from core import portal_tiles, signin
from core.errors import MengkaError

from . import selectors, services
from .forms import AccountLinkForm, CardBindForm, CodeForm, ConsentForm, SignInForm
from .issuers import SandboxIssuerVerifier, get_verifier
from .models import Cardholder
from .portal import View, cardholder_required

# --- sign in with lockout ------------------------------------------------------------------------------------------


@sensitive_post_parameters("password")
@require_http_methods(["GET", "POST"])
def sign_in(request: HttpRequest) -> HttpResponse:
    """Signs a cardholder in, with the lockout of `core.signin` (per username and per address)."""
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}, require_https=request.is_secure()):
        next_url = ""
    form = SignInForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        username = form.cleaned_data["username"]
        lockout = signin.signin_locked(request, username)
        if lockout is not None:
            form.add_error(None, lockout.message)
            status = 429
        else:
            user = authenticate(request, username=username, password=form.cleaned_data["password"])
            if user is None:
                signin.signin_failed(request, username, surface="portal")
                form.add_error(None, _("The username or password is not right."))
            else:
                signin.signin_succeeded(request, username)
                login(request, user)
                return redirect(next_url or settings.LOGIN_REDIRECT_URL)
    return render(request, "registration/login.html", {"form": form, "next": next_url}, status=status)


# --- the portal ----------------------------------------------------------------------------------------------------


@cardholder_required
def dashboard(request: HttpRequest, cardholder: Cardholder) -> HttpResponse:
    """The day at a glance: the tiles other apps register (`core.portal_tiles`: points, this month's spending,
    benefits), then the cards and linked accounts."""
    return render(
        request,
        "members/dashboard.html",
        {
            "cardholder": cardholder,
            "tiles": portal_tiles.tiles_for(cardholder),
            "cards": selectors.cards_of(cardholder),
            "accounts": selectors.linked_accounts_of(cardholder),
        },
    )


@cardholder_required
def card_detail(request: HttpRequest, cardholder: Cardholder, card_id: int) -> HttpResponse:
    card = selectors.card_of(cardholder, card_id)
    return render(request, "members/card_detail.html", {"card": card})


def _card_transition(service: Callable[..., Any], done: Any) -> View:
    @require_POST
    @cardholder_required
    def view(request: HttpRequest, cardholder: Cardholder, card_id: int) -> HttpResponse:
        card = selectors.card_of(cardholder, card_id)
        try:
            service(card=card, actor=request.user, reason="cardholder, portal")
        except MengkaError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, done)
        return redirect("members:card_detail", card_id=card.pk)

    return view


card_freeze = _card_transition(services.card_freeze, gettext_lazy("The card is frozen: no payment will use it."))
card_unfreeze = _card_transition(services.card_unfreeze, gettext_lazy("The card is active again."))


@sensitive_post_parameters("card_number")
@require_http_methods(["GET", "POST"])
@cardholder_required
def card_bind(request: HttpRequest, cardholder: Cardholder) -> HttpResponse:
    form = CardBindForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            month, year = form.cleaned_data["expiry"]
            try:
                challenge = services.card_bind_start(
                    cardholder=cardholder,
                    card_number=form.cleaned_data["card_number"],
                    expiry_month=month,
                    expiry_year=year,
                )
            except MengkaError as exc:
                form.add_error(None, exc.message)
                status = exc.http_status
            else:
                return redirect("members:binding_verify", challenge_id=challenge.pk)
        else:
            status = 422
    return render(request, "members/card_bind.html", {"form": form}, status=status)


@sensitive_post_parameters("account_number")
@require_http_methods(["GET", "POST"])
@cardholder_required
def account_link(request: HttpRequest, cardholder: Cardholder) -> HttpResponse:
    form = AccountLinkForm(request.POST or None, banks=selectors.banks_for_accounts())
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                challenge = services.linked_account_bind_start(
                    cardholder=cardholder,
                    bank=form.cleaned_data["bank"],
                    kind=form.cleaned_data["kind"],
                    account_number=form.cleaned_data["account_number"],
                )
            except MengkaError as exc:
                form.add_error(None, exc.message)
                status = exc.http_status
            else:
                return redirect("members:binding_verify", challenge_id=challenge.pk)
        else:
            status = 422
    return render(request, "members/account_link.html", {"form": form}, status=status)


@require_http_methods(["GET", "POST"])
@cardholder_required
def binding_verify(request: HttpRequest, cardholder: Cardholder, challenge_id: int) -> HttpResponse:
    challenge = selectors.challenge_of(cardholder, challenge_id)
    form = CodeForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            bound = services.binding_verify(
                cardholder=cardholder, challenge_id=challenge.pk, code=form.cleaned_data["code"]
            )
        except MengkaError as exc:
            form.add_error("code", exc.message)
            status = exc.http_status
            challenge.refresh_from_db()
        else:
            messages.success(request, _("Verified: %(what)s is active.") % {"what": str(bound)})
            return redirect("members:dashboard")
    return render(
        request,
        "members/binding_verify.html",
        {
            "challenge": challenge,
            "target": challenge.card or challenge.linked_account,
            "form": form,
            "phone_hint": cardholder.masked_phone,
            "debug": settings.DEBUG,
        },
        status=status,
    )


@require_http_methods(["GET", "POST"])
@cardholder_required
def consents(request: HttpRequest, cardholder: Cardholder) -> HttpResponse:
    if request.method == "POST":
        form = ConsentForm(request.POST)
        if form.is_valid():
            purpose, action = form.cleaned_data["purpose"], form.cleaned_data["action"]
            try:
                if action == "grant":
                    services.consent_grant(cardholder=cardholder, purpose=purpose)
                else:
                    services.consent_withdraw(cardholder=cardholder, purpose=purpose)
            except MengkaError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, _("Saved. It applies immediately."))
        return redirect("members:consents")
    return render(
        request,
        "members/consents.html",
        {"overview": selectors.consents_overview(cardholder), "history": selectors.consent_history(cardholder)[:50]},
    )


def dev_otp(request: HttpRequest) -> HttpResponse:
    """Development only: the simulated phone's inbox of sandbox codes. 404 unless DEBUG and the sandbox is in use,
    before anything else (signed in or not)."""
    verifier = get_verifier()
    if not settings.DEBUG or not isinstance(verifier, SandboxIssuerVerifier):
        raise Http404("Not available.")
    return _dev_otp_inbox(request, verifier)


@cardholder_required
def _dev_otp_inbox(request: HttpRequest, cardholder: Cardholder, verifier: SandboxIssuerVerifier) -> HttpResponse:
    # The inbox keeps the time as text; as a datetime again, the page shows it in Asia/Shanghai like every other time.
    codes = [
        {**message, "sent_at": dt.datetime.fromisoformat(message["sent_at"])}
        for message in verifier.sent_codes(cardholder.phone_hash)
    ]
    return render(request, "members/dev_otp.html", {"codes": codes, "dashboard": reverse("members:dashboard")})

"""The cardholder portal's alliance pages: find my best card, and my segments."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_http_methods

from core.errors import MengkaError
from members.models import Cardholder
from members.portal import cardholder_required

from . import selectors, services
from .forms import BestCardForm, spend_field, uses_field


@require_http_methods(["GET", "POST"])
@cardholder_required
def best_card(request: HttpRequest, cardholder: Cardholder) -> HttpResponse:
    """The cardholder states their typical monthly spending, or fills it from their own payments after ticking the
    consent box (only then is the history read, and the use audited); each alliance card product is valued over a
    year and ranked, with the best two-card combination. Nothing is saved but the audit row of a consented import."""
    context: dict[str, Any] = {"result": None, "history": None}
    status = 200
    if request.method != "POST":
        form = BestCardForm()
    else:
        form = BestCardForm(request.POST)
        if not form.is_valid():
            status = 400
        elif form.importing:
            history = services.spending_from_history(
                cardholder=cardholder, consented=form.cleaned_data["use_history"], actor=request.user
            )
            uses = form.cleaned_data["benefit_uses"]
            initial: dict[str, Any] = {spend_field(c): amount for c, amount in history.monthly_spending.items()}
            initial.update({uses_field(kind): count for kind, count in uses.items()})
            form = BestCardForm(initial=initial)
            context["history"] = history
            if not history.empty:
                context["result"] = services.best_card_for(cardholder, history.monthly_spending, uses)
        else:
            try:
                context["result"] = services.best_card_for(
                    cardholder, form.cleaned_data["spending"], form.cleaned_data["benefit_uses"]
                )
            except MengkaError as exc:
                form.add_error(None, exc.message)
                status = 400
    context["form"] = form
    return render(request, "alliance/best_card.html", context, status=status)


@cardholder_required
@require_GET
def segments(request: HttpRequest, cardholder: Cardholder) -> HttpResponse:
    """The cardholder's segment tags and how each was derived, the consent they depend on, and the rules in force."""
    return render(request, "alliance/portal_segments.html", {"segments": selectors.cardholder_segments(cardholder)})

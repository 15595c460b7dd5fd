"""The alliance's cardholder portal pages (under /portal/alliance/)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from members.models import Cardholder
from members.portal import cardholder_required

from . import selectors


@cardholder_required
@require_GET
def segments(request: HttpRequest, cardholder: Cardholder) -> HttpResponse:
    """The cardholder's segment tags and how each was derived, the consent they depend on, and the rules in force."""
    return render(request, "alliance/portal_segments.html", {"segments": selectors.cardholder_segments(cardholder)})

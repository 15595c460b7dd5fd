"""The cardholder portal's sign-in guard, shared by every app's portal views (members owns cardholders)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from core.errors import NotFound

from . import selectors

View = Callable[..., HttpResponse]
Response = TypeVar("Response", bound=HttpResponseBase)  # a page, or a streamed download


def cardholder_required(view: Callable[..., Response]) -> Callable[..., Response]:
    """Signs the visitor in first, then calls the view with their cardholder; a missing object answers 404."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Response:
        cardholder = selectors.cardholder_for_user(request.user)
        if cardholder is None:
            raise Http404("No cardholder profile for this sign-in.")
        try:
            return view(request, cardholder, *args, **kwargs)
        except NotFound as exc:
            raise Http404(exc.message) from exc

    return wrapper

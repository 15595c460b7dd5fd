"""Platform forms (parse input; the rules are in services)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from . import signin

LOCKED_OUT = "locked_out"


class OperatorSignInForm(AdminAuthenticationForm):
    """The admin's sign-in, with the portal's lockout (`core.signin`): a locked username or address is refused before
    the password is checked, and every refused sign-in (wrong password, not a staff account) counts as a failure."""

    def clean(self) -> dict[str, Any]:
        username, password = self.cleaned_data.get("username"), self.cleaned_data.get("password")
        if self.request is None or not (username and password):
            return super().clean()
        lockout = signin.signin_locked(self.request, username)
        if lockout is not None:
            raise ValidationError(lockout.message, code=LOCKED_OUT)
        try:
            cleaned = super().clean()
        except ValidationError:
            signin.signin_failed(self.request, username, surface="admin")
            raise
        signin.signin_succeeded(self.request, username)
        return cleaned


class ApprovalDecisionForm(forms.Form):
    """A checker's approval or rejection (the reason required on rejection, by the service), or a maker's cancel."""

    decision = forms.ChoiceField(
        choices=[("approve", _("Approve")), ("reject", _("Reject")), ("cancel", _("Cancel the request"))]
    )
    reason = forms.CharField(
        label=_("Reason (required to reject)"), required=False, widget=forms.Textarea(attrs={"rows": 3, "cols": 60})
    )

"""What every members service shares: who acts (a staff user, a cardholder's user, or None for the system)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

Actor = AbstractBaseUser | AnonymousUser | None

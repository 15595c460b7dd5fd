"""Members: tasks (take ids, call one service)."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="members.binding_challenge_expire")
def binding_challenge_expire(challenge_id: int) -> bool:
    """Scheduled at a challenge's expiry: closes it and its pending card or account if the code was never entered."""
    return services.binding_challenge_expire(challenge_id=challenge_id)

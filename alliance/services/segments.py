"""Cardholder segments: the nightly job that derives tags from payment history, and what a withdrawal removes.

Only cardholders who consent to personalised offers are ever tagged. For each active `SegmentRule`, a cardholder
qualifies when their live CNY payments captured in the rule's window (the `window_days` up to the run), in the rule's
categories, net of refunds (a payment refunded in full does not count), reach both the rule's minimum count and its
minimum net spend.

The job owns the tags named like a rule (active or not): it adds them to those who qualify and removes them from
everyone else. Other tags (set by an operator on the cardholder's page) are left alone; a withdrawal of the consent
removes them all (`members.services.consent_withdraw`, which calls `segments_forget` first).

Set-based, in one transaction: one statement finds every qualifying (rule, cardholder) with its figures, two bring
the derivation records (`SegmentMembership`) in line, one (members') writes every changed cardholder's tags. The
number of statements does not depend on how many cardholders there are. See docs/segments.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

from django.contrib.postgres.aggregates import JSONBAgg
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _

from core.calendar import local_date
from core.errors import ValidationFailed
from core.jobs import job_run
from members import services as members_services
from members.models import ConsentPurpose, SpendCategory
from payments.selectors import payments_created_for_captures

from ..models import MAX_SEGMENT_WINDOW_DAYS, SegmentMembership, SegmentRule

JOB = "alliance.segments"
# The job holds this lock (exclusive) for its transaction; a withdrawal takes it shared before it removes anything, so
# it waits for a running job to commit and then removes what the job wrote, never the other way round.
LOCK_KEY = int.from_bytes(hashlib.blake2b(b"alliance.segments", digest_size=8).digest(), "big", signed=True)

# Every (rule, cardholder) that qualifies now, with the figures that qualified them. Parameters: `now` (the end of
# every window, exclusive), `purpose` (personalised offers), and `created_from` / `created_to` (the months the longest
# window's payments can have been made in, so that only their partitions are read).
QUALIFIED_SQL = """
CREATE TEMPORARY TABLE segment_qualified ON COMMIT DROP AS
SELECT r.id AS rule_id, p.cardholder_id, COUNT(*) AS payments_count,
       SUM(p.amount_captured - p.amount_refunded) AS amount
FROM alliance_segmentrule r
JOIN payments_paymentintent p
  ON p.captured_at >= %(now)s - make_interval(days => r.window_days) AND p.captured_at < %(now)s
 AND p.created_at >= %(created_from)s AND p.created_at < %(created_to)s
 AND (r.categories = '[]'::jsonb OR r.categories ? p.spend_category)
JOIN members_consent c
  ON c.cardholder_id = p.cardholder_id AND c.purpose = %(purpose)s AND c.granted
WHERE r.active
  AND p.livemode AND p.currency = 'CNY' AND p.status = 'succeeded'
  AND p.amount_captured > p.amount_refunded
GROUP BY r.id, p.cardholder_id
HAVING COUNT(*) >= r.min_payments AND SUM(p.amount_captured - p.amount_refunded) >= r.min_amount
""".strip()

# Derivations that no longer hold: the cardholder stopped qualifying, withdrew consent, or the rule was deactivated.
REMOVED_SQL = """
DELETE FROM alliance_segmentmembership m
WHERE NOT EXISTS (
  SELECT 1 FROM segment_qualified q WHERE q.rule_id = m.rule_id AND q.cardholder_id = m.cardholder_id
)
""".strip()

# New derivations, and those whose figures or rule changed (an unchanged one keeps its row and its time).
UPSERT_SQL = """
INSERT INTO alliance_segmentmembership
  (cardholder_id, rule_id, tag, rule_version, window_days, payments_count, amount, computed_at)
SELECT q.cardholder_id, q.rule_id, r.code, r.version, r.window_days, q.payments_count, q.amount, %(now)s
FROM segment_qualified q
JOIN alliance_segmentrule r ON r.id = q.rule_id
ON CONFLICT (cardholder_id, rule_id) DO UPDATE
SET tag = EXCLUDED.tag, rule_version = EXCLUDED.rule_version, window_days = EXCLUDED.window_days,
    payments_count = EXCLUDED.payments_count, amount = EXCLUDED.amount, computed_at = EXCLUDED.computed_at
WHERE (alliance_segmentmembership.tag, alliance_segmentmembership.rule_version,
       alliance_segmentmembership.window_days, alliance_segmentmembership.payments_count,
       alliance_segmentmembership.amount)
  IS DISTINCT FROM (EXCLUDED.tag, EXCLUDED.rule_version, EXCLUDED.window_days, EXCLUDED.payments_count,
                    EXCLUDED.amount)
""".strip()


@dataclass(frozen=True)
class SegmentReport:
    qualified: int  # (rule, cardholder) pairs that qualify now
    removed: int  # derivations removed
    written: int  # derivations added or changed
    cardholders: int  # cardholders whose tags changed

    def counts(self) -> dict[str, int]:
        return {
            "qualified": self.qualified,
            "removed": self.removed,
            "written": self.written,
            "cardholders": self.cardholders,
        }


def segments_compute(*, now: dt.datetime | None = None, echo: IO[str] | None = None) -> SegmentReport:
    """Derives every consenting cardholder's segment tags as of `now` (default: now), recorded as a job run
    (`alliance.segments`, by local day). Running it again changes nothing unless the payments, consents or rules did."""
    now = now or timezone.now()
    with job_run(JOB, period=local_date(now).isoformat(), total=4, echo=echo) as run:
        report = _compute(now, run)
    return report


@transaction.atomic
def _compute(now: dt.datetime, run: Any) -> SegmentReport:
    # The months the payments of the longest active window can have been made in.
    longest = SegmentRule.objects.filter(active=True).aggregate(days=Max("window_days"))["days"] or 0
    created_from, created_to = payments_created_for_captures(now - dt.timedelta(days=longest), now)
    params: dict[str, Any] = {
        "now": now,
        "purpose": ConsentPurpose.PERSONALISED_OFFERS.value,
        "created_from": created_from,
        "created_to": created_to,
    }
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
        # A second run in the same transaction (tests) finds the first one's table still there.
        cursor.execute("DROP TABLE IF EXISTS pg_temp.segment_qualified")
        cursor.execute(QUALIFIED_SQL, params)
        qualified = cursor.rowcount
        run.advance(1, qualified=qualified)
        cursor.execute(REMOVED_SQL)
        removed = cursor.rowcount
        run.advance(1, removed=removed)
        cursor.execute(UPSERT_SQL, params)
        written = cursor.rowcount
        run.advance(1, written=written)
    derived = SegmentMembership.objects.values("cardholder_id").annotate(tags=JSONBAgg("tag", order_by="tag"))
    owned = sorted(SegmentRule.objects.values_list("code", flat=True))
    cardholders = members_services.segment_tags_sync(owned=owned, derived=derived)
    run.advance(1, cardholders=cardholders)
    return SegmentReport(qualified=qualified, removed=removed, written=written, cardholders=cardholders)


def segments_forget(cardholder_ids: Sequence[int]) -> None:
    """Removes the cardholders' derivation records, inside their consent withdrawal's transaction (registered with
    members in `AllianceConfig.ready`). Waits for a running job first (`LOCK_KEY`)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [LOCK_KEY])
    SegmentMembership.objects.filter(cardholder_id__in=list(cardholder_ids)).delete()


# --- rules -----------------------------------------------------------------------------------------------------------

# What decides who qualifies: a change to any of these is a new version of the rule. (The code is fixed once created:
# a renamed rule would leave its old tags behind as if an operator had set them.)
QUALIFYING_FIELDS = ("categories", "window_days", "min_payments", "min_amount", "active")


def segment_rule_check(
    *, categories: Sequence[str], window_days: int | None, min_payments: int | None, min_amount: int | None
) -> list[str]:
    """The rule's terms checked (the admin's form shows the errors by the fields); answers the categories in their
    canonical order."""
    unknown = sorted(set(categories) - set(SpendCategory.values))
    if unknown:
        raise ValidationFailed(
            _("Unknown spend categories: %(names)s.") % {"names": ", ".join(unknown)}, param="categories"
        )
    if window_days is not None and not 1 <= window_days <= MAX_SEGMENT_WINDOW_DAYS:
        raise ValidationFailed(
            _("The window runs from 1 to %(most)d days.") % {"most": MAX_SEGMENT_WINDOW_DAYS}, param="window_days"
        )
    if min_amount is not None and min_amount < 0:
        raise ValidationFailed(_("The minimum spend cannot be negative."), param="min_amount")
    if not (min_payments or 0) and not (min_amount or 0):
        raise ValidationFailed(_("Set a minimum number of payments, a minimum spend, or both."), param="min_payments")
    return [value for value in SpendCategory.values if value in categories]


def segment_rule_version(rule: SegmentRule) -> int:
    """The version `rule` is saved under: its current one, or the next when what qualifies changed."""
    if rule.pk is None:
        return 1
    stored = SegmentRule.objects.filter(pk=rule.pk).values(*QUALIFYING_FIELDS, "version").first()
    if stored is None:
        return 1
    changed = any(stored[name] != getattr(rule, name) for name in QUALIFYING_FIELDS)
    return int(stored["version"]) + 1 if changed else int(stored["version"])

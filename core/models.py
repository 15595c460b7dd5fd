from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class AuditLog(models.Model):
    """Append-only record of every operator and system action. The database refuses UPDATE and DELETE on it."""

    at = models.DateTimeField(_("at"), auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
        verbose_name=_("actor"),
    )
    actor_label = models.CharField(_("actor"), max_length=150)
    action = models.CharField(_("action"), max_length=64, db_index=True)
    object_type = models.CharField(_("object type"), max_length=100, blank=True)
    object_id = models.CharField(_("object id"), max_length=64, blank=True)
    object_repr = models.CharField(_("object"), max_length=200, blank=True)
    before = models.JSONField(_("before"), null=True, blank=True)
    after = models.JSONField(_("after"), null=True, blank=True)
    reason = models.TextField(_("reason"), blank=True)
    request_id = models.CharField(_("request id"), max_length=64, blank=True)
    bank_id = models.BigIntegerField(_("bank"), null=True, blank=True, db_index=True)

    class Meta:
        verbose_name = _("audit log entry")
        verbose_name_plural = _("audit log")
        ordering = ("-at", "-id")
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action} {self.object_type}#{self.object_id}"


class JobRun(models.Model):
    """One run of a job for a period, with progress and counts; a job and period cannot run twice at once."""

    class Status(models.TextChoices):
        RUNNING = "running", _("running")
        SUCCEEDED = "succeeded", _("succeeded")
        FAILED = "failed", _("failed")

    job = models.CharField(_("job"), max_length=100)
    period = models.CharField(_("period"), max_length=64, blank=True)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(_("started"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    total = models.BigIntegerField(_("total"), null=True, blank=True)
    done = models.BigIntegerField(_("done"), default=0)
    counts = models.JSONField(_("counts"), default=dict, blank=True)
    error = models.TextField(_("error"), blank=True)
    request_id = models.CharField(_("request id"), max_length=64, blank=True)

    class Meta:
        verbose_name = _("job run")
        verbose_name_plural = _("job runs")
        ordering = ("-started_at", "-id")
        permissions = [("rerun_jobrun", _("Can run a job again"))]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "period"], condition=Q(status="running"), name="jobrun_one_running_per_period"
            ),
        ]
        indexes = [models.Index(fields=["job", "period", "status"])]

    def __str__(self) -> str:
        return f"{self.job} {self.period} {self.status}"

    @property
    def progress_percent(self) -> int | None:
        if not self.total:
            return None
        return min(100, int(self.done * 100 / self.total))


class CalendarDay(models.Model):
    """An exception to the Monday–Friday rule: a public holiday, or a weekend day worked in exchange (调休)."""

    class Kind(models.TextChoices):
        HOLIDAY = "holiday", _("public holiday (no work)")
        WORKDAY = "workday", _("working weekend day (调休)")

    date = models.DateField(_("date"), unique=True)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    name = models.CharField(_("name"), max_length=100)
    provisional = models.BooleanField(
        _("provisional"), default=False, help_text=_("Not yet confirmed by the State Council notice for that year.")
    )

    class Meta:
        verbose_name = _("calendar day")
        verbose_name_plural = _("business calendar")
        ordering = ("date",)

    def __str__(self) -> str:
        return f"{self.date} {self.get_kind_display()} {self.name}"


class IdempotencyRecord(models.Model):
    """The first outcome of a mutating call made with an idempotency key, replayed for any retry of that call."""

    class State(models.TextChoices):
        IN_PROGRESS = "in_progress", _("in progress")
        # Stopped by an unexpected error after recording progress (the object it created): the next request with the
        # key resumes from there instead of starting again.
        INTERRUPTED = "interrupted", _("interrupted")
        DONE = "done", _("done")

    scope = models.CharField(_("scope"), max_length=64)
    key = models.CharField(_("key"), max_length=255)
    operation = models.CharField(_("operation"), max_length=64)
    fingerprint = models.CharField(_("request fingerprint"), max_length=64)
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default=State.IN_PROGRESS)
    status_code = models.PositiveSmallIntegerField(_("status code"), null=True, blank=True)
    response = models.JSONField(_("response"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    completed_at = models.DateTimeField(_("completed"), null=True, blank=True)

    class Meta:
        verbose_name = _("idempotency record")
        verbose_name_plural = _("idempotency records")
        constraints = [models.UniqueConstraint(fields=["scope", "key"], name="idempotency_scope_key_unique")]

    def __str__(self) -> str:
        return f"{self.scope}:{self.key} {self.operation} {self.state}"


class ApprovalRequest(models.Model):
    """One operator's request (the maker's) for a change that a second operator (the checker) must approve before it
    is applied: its kind (registered in `core.approvals`), the payload the kind validated, and who decided what.
    The bank is the one whose operator must check (none: an alliance operator); `bank_id` is a plain column because
    core knows no domain tables, as in the audit log."""

    class Status(models.TextChoices):
        PENDING = "pending", _("waiting for a second operator")
        APPROVED = "approved", _("approved and applied")
        REJECTED = "rejected", _("rejected")
        EXPIRED = "expired", _("expired")
        CANCELLED = "cancelled", _("cancelled")

    kind = models.CharField(_("kind"), max_length=64, db_index=True)
    payload = models.JSONField(_("payload"))
    reason = models.TextField(_("reason"))
    bank_id = models.BigIntegerField(_("bank"), null=True, blank=True, db_index=True)
    permission = models.CharField(_("permission needed to check"), max_length=100)
    maker = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("requested by")
    )
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    checker = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("decided by"),
    )
    decision_reason = models.TextField(_("reason for the decision"), blank=True)
    created_at = models.DateTimeField(_("requested"), auto_now_add=True)
    expires_at = models.DateTimeField(_("expires"))
    decided_at = models.DateTimeField(_("decided"), null=True, blank=True)
    result_type = models.CharField(_("result type"), max_length=100, blank=True)
    result_id = models.CharField(_("result id"), max_length=64, blank=True)

    class Meta:
        verbose_name = _("approval request")
        verbose_name_plural = _("approval requests")
        ordering = ("-id",)
        indexes = [
            models.Index(fields=["expires_at"], name="approval_pending_expiry", condition=Q(status="pending")),
        ]
        constraints = [
            models.CheckConstraint(condition=~Q(checker=models.F("maker")), name="approval_checker_not_maker"),
            models.CheckConstraint(
                condition=Q(status__in=["approved", "rejected"], checker__isnull=False, decided_at__isnull=False)
                | ~Q(status__in=["approved", "rejected"]),
                name="approval_decided_has_checker",
            ),
        ]

    def __str__(self) -> str:
        return f"approval {self.pk}: {self.kind} ({self.status})"


class ArchivedMonth(models.Model):
    """A month of a table partitioned by month (`core.partitions`) that the partitions job detached to an archive
    table. The archive stays in the database, readable by the application; the ledger's check reads archived months
    of entries as part of the ledger, and names one whose table has gone."""

    table = models.CharField(_("table"), max_length=63)
    month = models.DateField(_("month"), help_text=_("The first day of the month, in Asia/Shanghai."))
    archive_table = models.CharField(_("archive table"), max_length=63, unique=True)
    archived_at = models.DateTimeField(_("archived"), auto_now_add=True)

    class Meta:
        verbose_name = _("archived month")
        verbose_name_plural = _("archived months")
        ordering = ("table", "month")
        constraints = [models.UniqueConstraint(fields=["table", "month"], name="archivedmonth_table_month_unique")]

    def __str__(self) -> str:
        return f"{self.table} {self.month:%Y-%m} → {self.archive_table}"

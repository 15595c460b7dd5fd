"""Operators' console benchmark: the dashboard, the busiest lists and a CSV export at the large demo scale.

Seeds the demo alliance at `--scale large` (`manage.py seed_demo`), then, through the Django test client in one
process, `--requests` times each after a warm-up: the dashboard (the admin index) for an alliance operator, for an
alliance operator narrowed to one bank (`?bank=`) and for a bank operator; and the first page of the busiest change
lists (payments, ledger transactions and entries, cardholders, cards, vouchers, audit log) for both kinds of operator.
Then the full CSV export of the cardholders list (100,000 at the large scale), streamed, a few times: its line count
checked against the table and the export's audit row against the rows sent. The floor is the stock admin page
listing one app's models.

    .venv/bin/python bench/admin.py [--requests 50] [--scale large] [--redis URL|none] [--database NAME] [--keep]

Last line:
BENCH admin dashboard_p95_ms=... list_p95_ms=... export_rows_per_s=... export_rows=... floor_p95_ms=...
dashboard_bank_p95_ms=...
"""

from __future__ import annotations

import argparse
import io
import time
from typing import Any

from common import add_arguments, ms, percentile, setup

WARM_UP = 3
LISTS = (
    "payments_paymentintent",
    "rewards_ledgertransaction",
    "rewards_entry",
    "members_cardholder",
    "members_card",
    "rewards_voucher",
    "core_auditlog",
)


def timed(client: Any, url: str, requests: int) -> list[float]:
    for _ in range(WARM_UP):
        assert client.get(url).status_code == 200, url
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, url
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parser.add_argument("--requests", type=int, default=50, help="timed requests per page")
    parser.add_argument("--scale", choices=("small", "large"), default="large")
    parser.add_argument("--exports", type=int, default=3)
    args = parser.parse_args()
    setup("admin", args)

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.urls import reverse

    from core.models import AuditLog
    from members.models import BankOperator, Cardholder, MemberBank

    started = time.perf_counter()
    call_command("seed_demo", scale=args.scale, verbosity=0, stdout=io.StringIO())
    print(f"bench: seeded the {args.scale} demo in {time.perf_counter() - started:.0f} s", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")

    users = get_user_model()
    alliance = users.objects.create_superuser("bench-alliance", password="x")
    bank = MemberBank.objects.order_by("code").first()
    assert bank is not None
    banker = users.objects.create_user("bench-bank", password="x", is_staff=True)
    BankOperator.objects.create(user=banker, bank=bank, role="operator")
    from django.contrib.auth.models import Group

    banker.groups.add(Group.objects.get(name="Bank operators"))
    alliance_client, bank_client = Client(HTTP_HOST="localhost"), Client(HTTP_HOST="localhost")
    alliance_client.force_login(alliance)
    bank_client.force_login(banker)

    index = reverse("admin:index")
    response = bank_client.get(index)
    assert response.status_code == 200
    assert b'class="console-tile' in response.content, "the bank's dashboard is empty"
    dashboard = timed(alliance_client, index, args.requests)
    dashboard_bank = timed(alliance_client, f"{index}?bank={bank.pk}", args.requests)
    dashboard_bank += timed(bank_client, index, args.requests)
    floor = timed(alliance_client, reverse("admin:app_list", args=["payments"]), args.requests)

    list_times: dict[str, list[float]] = {}
    for name in LISTS:
        url = reverse(f"admin:{name}_changelist")
        list_times[name] = timed(alliance_client, url, args.requests) + timed(bank_client, url, args.requests)
    every_list = [value for values in list_times.values() for value in values]

    export_url = reverse("admin:members_cardholder_export")
    expected = Cardholder.objects.count()
    rates = []
    for _ in range(args.exports):
        started = time.perf_counter()
        response = alliance_client.get(export_url)
        lines = sum(chunk.count(b"\n") for chunk in response.streaming_content)
        elapsed = time.perf_counter() - started
        assert lines == expected + 1, (lines, expected)
        rates.append(expected / elapsed)
        audit = AuditLog.objects.filter(action="admin.export").order_by("-id").first()
        assert audit is not None
        assert audit.after["rows"] == expected
        assert audit.after["complete"]

    for name, values in list_times.items():
        print(f"bench: {name} p95 {ms(percentile(values, 0.95))} ms", flush=True)
    print(
        f"BENCH admin dashboard_p95_ms={ms(percentile(dashboard, 0.95))}"
        f" list_p95_ms={ms(percentile(every_list, 0.95))}"
        f" export_rows_per_s={sorted(rates)[len(rates) // 2]:.0f} export_rows={expected}"
        f" floor_p95_ms={ms(percentile(floor, 0.95))}"
        f" dashboard_bank_p95_ms={ms(percentile(dashboard_bank, 0.95))}",
        flush=True,
    )


if __name__ == "__main__":
    main()

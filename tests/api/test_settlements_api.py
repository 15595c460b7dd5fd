"""GET /api/v1/settlements: a merchant's settlement batches, their split summary and lines, and the lines as CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from core.partitions import partitions_maintain
from payments import selectors
from payments.models import Refund, SettlementBatch, SettlementLine
from tests.api.conftest import Api, World, new_api
from tests.factories import MemberBankFactory, make_settlement, settled_payment
from tests.partitioning import at

pytestmark = pytest.mark.django_db

DAY = dt.date(2026, 12, 7)


@pytest.fixture
def live(world: World) -> Api:
    return new_api(world.merchant, mode="live")


def _batch(world: World, **fields: Any) -> SettlementBatch:
    return make_settlement(world.merchant, **{"settle_on": DAY, **fields})


def _lines_batch(world: World) -> SettlementBatch:
    """A batch with a line of each kind: two payments, a refund, a reserve released and a negative net carried in."""
    return _batch(
        world,
        lines=[
            {"amount": 10_000, "fee": 6_025, "promotion_charge": 500, "cofunding_credit": 200},
            {"amount": 3_000, "fee": 1_800},
            {"kind": "refund", "amount": -2_000, "fee": -1_205},
            {"kind": "reserve_release", "amount": 700},
            {"kind": "carried", "amount": -300},
        ],
    )


def test_list_is_newest_first_and_paginated(world: World, live: Api) -> None:
    first, second, third = (_batch(world) for _ in range(3))
    status, body = live.get("settlements", {"limit": 2})
    assert status == 200
    assert [row["id"] for row in body["data"]] == [third.public_id, second.public_id]
    assert body["has_more"] is True
    status, body = live.get("settlements", {"limit": 2, "starting_after": second.public_id})
    assert (status, [row["id"] for row in body["data"]], body["has_more"]) == (200, [first.public_id], False)


def test_a_batch_still_being_built_is_not_shown(world: World, live: Api) -> None:
    building = _batch(world, status="building")
    shown = _batch(world)
    _, body = live.get("settlements")
    assert [row["id"] for row in body["data"]] == [shown.public_id]
    assert live.get(f"settlements/{building.public_id}")[0] == 404
    assert live.get(f"settlements/{building.public_id}/lines")[0] == 404


def test_filters_by_status_and_settlement_date(world: World, live: Api) -> None:
    early = _batch(world, settle_on=DAY - dt.timedelta(days=2), status="paid")
    held = _batch(world, settle_on=DAY, status="held", hold_reason="chargebacks under review")
    late = _batch(world, settle_on=DAY + dt.timedelta(days=2), status="paid")

    def ids(params: dict[str, Any]) -> list[str]:
        status, body = live.get("settlements", params)
        assert status == 200, body
        return [row["id"] for row in body["data"]]

    assert ids({"status": "paid"}) == [late.public_id, early.public_id]
    assert ids({"status": "held"}) == [held.public_id]
    assert ids({"settle_on_gte": DAY.isoformat()}) == [late.public_id, held.public_id]
    assert ids({"settle_on_lte": DAY.isoformat()}) == [held.public_id, early.public_id]
    assert ids({"settle_on_gte": DAY.isoformat(), "settle_on_lte": DAY.isoformat()}) == [held.public_id]
    assert ids({"status": "paid", "settle_on_gte": DAY.isoformat()}) == [late.public_id]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"status": "building"}, "status"),
        ({"status": "nonsense"}, "status"),
        ({"settle_on_gte": "07/12/2026"}, "settle_on_gte"),
        ({"settle_on_lte": "1999-12-31"}, "settle_on_lte"),
        ({"limit": 0}, "limit"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_list_queries_are_400(live: Api, params: dict[str, Any], param: str) -> None:
    status, body = live.get("settlements", params)
    assert status == 400
    assert body["error"]["param"] == param


def test_retrieve_shows_the_batch_and_its_split_summary(world: World, live: Api) -> None:
    sponsor, issuer = world.merchant.sponsor_bank, MemberBankFactory()
    batch = _batch(
        world,
        lines=[{"amount": 10_000, "fee": 6_025}, {"kind": "refund", "amount": -2_000, "fee": -1_205}],
        reserve_held=400,
        reserve_release_on=DAY + dt.timedelta(days=30),
        splits=[
            {"party": "merchant", "amount": 712_000},
            {"party": "issuer", "bank": issuer, "amount": 2_000},
            {"party": "issuer", "bank": issuer, "amount": 1_000},  # summed with the one above
            {"party": "acquirer", "bank": sponsor, "amount": 1_820},
            {"party": "reserve", "amount": 40_000},
        ],
    )
    status, body = live.get(f"settlements/{batch.public_id}")
    assert status == 200
    assert {key: body[key] for key in ("id", "object", "currency", "status", "settle_on", "livemode")} == {
        "id": batch.public_id,
        "object": "settlement",
        "currency": "CNY",
        "status": "settled",
        "settle_on": DAY.isoformat(),
        "livemode": True,
    }
    # fees: 60.25 − 12.05 = 48.20 minor units, rounded once to 48; net = 10000 − 2000 − 48 − 400.
    figures = ("payments", "gross", "refunds_count", "refunds", "fees", "reserve_held", "net")
    assert {key: body[key] for key in figures} == {
        "payments": 1,
        "gross": 10_000,
        "refunds_count": 1,
        "refunds": 2_000,
        "fees": 48,
        "reserve_held": 400,
        "net": 7_552,
    }
    assert body["reserve_release_on"] == (DAY + dt.timedelta(days=30)).isoformat()
    assert body["splits"] == [
        {"party": "acquirer", "bank": sponsor.code, "acquirer": sponsor.code, "amount": "18.20"},
        {"party": "issuer", "bank": issuer.code, "acquirer": sponsor.code, "amount": "30.00"},
        {"party": "merchant", "bank": None, "acquirer": sponsor.code, "amount": "7120.00"},
        {"party": "reserve", "bank": None, "acquirer": sponsor.code, "amount": "400.00"},
    ]


def _all_lines(api: Api, batch: SettlementBatch, limit: int) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        status, body = api.get(f"settlements/{batch.public_id}/lines", params)
        assert status == 200, body
        assert len(body["data"]) <= limit
        lines += body["data"]
        if not body["has_more"]:
            return lines
        params["starting_after"] = body["data"][-1]["id"]


def test_lines_are_paginated_in_order_with_exact_figures(world: World, live: Api) -> None:
    batch = _lines_batch(world)
    written = list(SettlementLine.objects.filter(batch=batch).select_related("payment", "refund", "source"))
    lines = _all_lines(live, batch, limit=2)
    assert lines == _all_lines(live, batch, limit=100)
    assert [line["id"] for line in lines] == ["stll_1", "stll_2", "stll_3", "stll_4", "stll_5"]
    assert [line["kind"] for line in lines] == ["payment", "payment", "refund", "reserve_release", "carried"]
    assert lines[0] == {
        "id": "stll_1",
        "object": "settlement_line",
        "kind": "payment",
        "payment": written[0].payment.public_id,
        "refund": None,
        "dispute": None,
        "source": None,
        "amount": 10_000,
        "fee": "60.25",
        "promotion_charge": 500,
        "cofunding_credit": 200,
    }
    # A refund's line names the payment it refunds, as settlement writes it.
    assert written[2].payment_id == written[2].refund.intent_id
    assert (lines[2]["refund"], lines[2]["payment"], lines[2]["amount"], lines[2]["fee"]) == (
        written[2].refund.public_id, written[2].payment.public_id, -2_000, "-12.05",
    )  # fmt: skip
    assert [line["source"] for line in lines[3:]] == [written[3].source.public_id, written[4].source.public_id]
    assert [line["fee"] for line in lines[3:]] == ["0.00", "0.00"]


def test_line_ids_do_not_depend_on_other_batches(world: World, live: Api) -> None:
    make_settlement(lines=[{"amount": 1_000}, {"amount": 2_000}])  # another merchant's lines, written first
    batch = _batch(world, lines=[{"amount": 5_000}])
    _, body = live.get(f"settlements/{batch.public_id}/lines")
    assert [line["id"] for line in body["data"]] == ["stll_1"]


@pytest.mark.parametrize("cursor", ["stll_x", "pay_1", "stll_", "stll_-1", "stll_１"])
def test_a_cursor_that_is_no_line_is_404(world: World, live: Api, cursor: str) -> None:
    batch = _lines_batch(world)
    status, body = live.get(f"settlements/{batch.public_id}/lines", {"starting_after": cursor})
    assert (status, body["error"]["param"]) == (404, "starting_after")


def _csv(api: Api, path: str, **headers: Any) -> Any:
    return api.raw("get", path, **headers)


def test_lines_csv_streams_every_line_with_a_header(world: World, live: Api) -> None:
    batch = _lines_batch(world)
    response = _csv(live, f"settlements/{batch.public_id}/lines.csv")
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="{batch.public_id}-lines.csv"'
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == [
        "id", "kind", "payment", "refund", "dispute", "source", "amount", "fee", "promotion_charge",
        "cofunding_credit",
    ]  # fmt: skip
    api_lines = _all_lines(live, batch, limit=100)
    assert rows[1:] == [
        [
            line["id"], line["kind"], line["payment"] or "", line["refund"] or "", line["dispute"] or "",
            line["source"] or "",
            str(line["amount"]), line["fee"], str(line["promotion_charge"]), str(line["cofunding_credit"]),
        ]
        for line in api_lines
    ]  # fmt: skip
    assert rows[1][6:8] == ["10000", "60.25"]


def test_lines_csv_whatever_the_client_accepts(world: World, live: Api) -> None:
    batch = _lines_batch(world)
    for accept in ("text/csv", "application/json", "*/*", "image/png"):
        response = _csv(live, f"settlements/{batch.public_id}/lines.csv", HTTP_ACCEPT=accept)
        assert (response.status_code, response["Content-Type"]) == (200, "text/csv; charset=utf-8"), accept
    missing = _csv(live, "settlements/stl_nope/lines.csv", HTTP_ACCEPT="text/csv")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "resource_missing"
    assert _csv(live, f"settlements/{batch.public_id}/lines.csv", data={"limit": 1}).status_code == 400


def test_an_empty_batch_has_a_header_only_csv(world: World, live: Api) -> None:
    batch = _batch(world, status="carried")
    response = _csv(live, f"settlements/{batch.public_id}/lines.csv")
    assert b"".join(response.streaming_content).decode().splitlines() == [
        "id,kind,payment,refund,dispute,source,amount,fee,promotion_charge,cofunding_credit"
    ]
    _, body = live.get(f"settlements/{batch.public_id}/lines")
    assert body == {"object": "list", "data": [], "has_more": False}


def test_another_merchants_batches_are_not_found(world: World, other: World, live: Api) -> None:
    theirs = make_settlement(other.merchant, lines=[{"amount": 1_000}])
    mine = _batch(world)
    _, body = live.get("settlements")
    assert [row["id"] for row in body["data"]] == [mine.public_id]
    for path in ("", "/lines"):
        status, body = live.get(f"settlements/{theirs.public_id}{path}")
        assert (status, body["error"]["code"]) == (404, "resource_missing"), path
    assert _csv(live, f"settlements/{theirs.public_id}/lines.csv").status_code == 404
    status, _ = live.get("settlements", {"starting_after": theirs.public_id})
    assert status == 404


def test_a_key_sees_only_its_modes_batches(world: World, live: Api) -> None:
    live_batch = _batch(world, lines=[{"amount": 1_000}])
    test_batch = _batch(world, livemode=False, lines=[{"amount": 2_000}])
    test_key = world.api
    assert [row["id"] for row in live.get("settlements")[1]["data"]] == [live_batch.public_id]
    assert [row["id"] for row in test_key.get("settlements")[1]["data"]] == [test_batch.public_id]
    assert test_key.get(f"settlements/{test_batch.public_id}")[1]["livemode"] is False
    for path in ("", "/lines"):
        assert test_key.get(f"settlements/{live_batch.public_id}{path}")[0] == 404
        assert live.get(f"settlements/{test_batch.public_id}{path}")[0] == 404
    assert _csv(test_key, f"settlements/{live_batch.public_id}/lines.csv").status_code == 404


def test_a_read_only_key_reads_settlements(world: World) -> None:
    batch = _lines_batch(world)
    reader = new_api(world.merchant, mode="live", scope="read")
    assert reader.get("settlements")[0] == 200
    assert reader.get(f"settlements/{batch.public_id}")[0] == 200
    assert reader.get(f"settlements/{batch.public_id}/lines")[0] == 200
    assert _csv(reader, f"settlements/{batch.public_id}/lines.csv").status_code == 200


def test_without_a_key_nothing_is_shown(world: World) -> None:
    batch = _lines_batch(world)
    client = Client()
    for path in ("settlements", f"settlements/{batch.public_id}", f"settlements/{batch.public_id}/lines.csv"):
        response = client.get(f"/api/v1/{path}")
        assert response.status_code == 401, path
        assert response.json()["error"]["type"] == "authentication_error"


def test_the_schema_documents_the_settlement_operations() -> None:
    schema = Client().get("/api/v1/schema/", {"format": "json"}).json()
    paths = schema["paths"]
    assert {"get"} == set(paths["/api/v1/settlements"]) == set(paths["/api/v1/settlements/{settlement_id}"])
    csv_operation = paths["/api/v1/settlements/{settlement_id}/lines.csv"]["get"]
    assert list(csv_operation["responses"]["200"]["content"]) == ["text/csv"]
    assert csv_operation["responses"]["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    lines = paths["/api/v1/settlements/{settlement_id}/lines"]["get"]
    assert {parameter["name"] for parameter in lines["parameters"]} == {"settlement_id", "limit", "starting_after"}
    listing = paths["/api/v1/settlements"]["get"]
    names = {parameter["name"] for parameter in listing["parameters"]}
    assert names == {"limit", "starting_after", "status", "settle_on_gte", "settle_on_lte"}
    detail = schema["components"]["schemas"]["SettlementDetailOut"]
    assert detail["properties"]["splits"]["type"] == "array"


def test_many_lines_are_read_only_as_the_csv_is_sent(world: World, live: Api) -> None:
    batch = _batch(world, lines=[{"amount": 100 + n, "fee": n} for n in range(250)])
    last_payment = SettlementLine.objects.filter(batch=batch).order_by("pk").last().payment.public_id  # type: ignore[union-attr]
    with CaptureQueriesContext(connection) as answered:
        response = _csv(live, f"settlements/{batch.public_id}/lines.csv")
    assert not [query for query in answered.captured_queries if "settlementline" in query["sql"]]
    rows = b"".join(response.streaming_content).decode().splitlines()
    assert len(rows) == 251
    assert rows[-1] == f"stll_250,payment,{last_payment},,,,349,2.49,0,0"


def test_a_batchs_lines_of_an_archived_month_are_still_its_lines(world: World, live: Api) -> None:
    """The job archives the month of a batch's oldest payments, their lines' and their refund's (docs/scaling.md,
    "Settlement lines"): the pages, across the archive's edge, and the CSV show every line as before, numbered as
    before, naming the archived refund."""
    with connection.cursor() as cursor:  # as if committed before the job: no key checks left pending
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    money = {"livemode": True, "currency": "CNY"}
    with mock.patch("django.utils.timezone.now", return_value=at(2031, 1)):
        old = settled_payment(world.merchant, amount=4_000, **money)
        old_refunded = settled_payment(world.merchant, amount=1_500, **money)
        old_refund = Refund.objects.create(
            intent=old_refunded, intent_created_at=old_refunded.created_at, merchant_id=world.merchant.pk, amount=1_500,
            reference=f"{old_refunded.public_id}-r1", status="succeeded",
        )  # fmt: skip
    with mock.patch("django.utils.timezone.now", return_value=at(2032, 5)):
        recent = [settled_payment(world.merchant, amount=amount, **money) for amount in (2_000, 3_000)]
    batch = _batch(
        world,
        lines=[
            {"payment": old, "amount": 4_000, "fee": 2_410},
            {"kind": "refund", "refund": old_refund, "amount": -1_500, "fee": -900},
            {"payment": recent[0], "amount": 2_000, "fee": 1_205},
            {"payment": recent[1], "amount": 3_000, "fee": 1_808},
            {"kind": "carried", "amount": -300},
        ],
    )
    before = _all_lines(live, batch, limit=100)
    before_csv = b"".join(_csv(live, f"settlements/{batch.public_id}/lines.csv").streaming_content)
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")

    result = partitions_maintain(today=dt.date(2032, 6, 10), ahead=0, archive_after=3)

    assert {"payments_settlementline_archive_203101", "payments_refund_archive_203101"} <= set(result.archived)
    assert SettlementLine.objects.filter(batch=batch).count() == 3  # the month's two lines are in its archive now
    assert [line["id"] for line in before] == ["stll_1", "stll_2", "stll_3", "stll_4", "stll_5"]
    assert (before[1]["refund"], before[1]["payment"]) == (old_refund.public_id, old_refunded.public_id)
    for limit in (1, 2, 3, 100):
        assert _all_lines(live, batch, limit=limit) == before
    _, page = live.get(f"settlements/{batch.public_id}/lines", {"limit": 2, "starting_after": "stll_1"})
    assert [line["id"] for line in page["data"]] == ["stll_2", "stll_3"]
    assert b"".join(_csv(live, f"settlements/{batch.public_id}/lines.csv").streaming_content) == before_csv
    rows = list(csv.reader(io.StringIO("".join(selectors.settlement_lines_csv(batch_id=batch.pk, chunk_size=2)))))
    assert [row[0] for row in rows[1:]] == ["stll_1", "stll_2", "stll_3", "stll_4", "stll_5"]

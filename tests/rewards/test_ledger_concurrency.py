"""Real parallel connections on PostgreSQL: no overdraft, holds resolve once, a mixed soak keeps every invariant."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest

from core.errors import Conflict, InsufficientFunds, ValidationFailed
from rewards import services as s
from rewards.checks import ledger_verify
from rewards.models import Account, Hold, LedgerTransaction
from rewards.sealing import seal_pending
from tests.concurrency import run_parallel
from tests.factories import CardholderFactory, PointsProgramFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_fifty_concurrent_redemptions_against_ten() -> None:
    program, holder = PointsProgramFactory(), CardholderFactory()
    s.points_earn(cardholder_id=holder.pk, program=program, amount=100, idempotency_key="seed")

    def redeem(i: int) -> Any:
        return s.points_redeem(cardholder_id=holder.pk, program=program, amount=10, idempotency_key=f"r{i}")

    results = run_parallel(50, redeem)
    ok = [r for r in results if isinstance(r, LedgerTransaction)]
    refused = [r for r in results if isinstance(r, InsufficientFunds)]
    assert (len(ok), len(refused)) == (10, 40), [
        r for r in results if not isinstance(r, LedgerTransaction | InsufficientFunds)
    ]
    wallet = s.wallet_account(holder.pk, program)
    assert (wallet.posted, wallet.held) == (0, 0)
    assert ledger_verify(seals=False).violations == []


def test_ten_first_earns_of_a_new_cardholder_in_parallel_make_one_wallet() -> None:
    """Every earn finds the wallet missing and creates it: one constraint (one server) or one creation lock (Citus,
    where the accounts' uniqueness cannot be a constraint) makes sure only one does."""
    program, holder = PointsProgramFactory(), CardholderFactory()

    def earn(i: int) -> Any:
        return s.points_earn(cardholder_id=holder.pk, program=program, amount=10, idempotency_key=f"first{i}")

    results = run_parallel(10, earn)
    assert all(isinstance(r, LedgerTransaction) for r in results), results
    wallets = Account.objects.filter(owner_kind="cardholder", owner_id=holder.pk, purpose="points")
    assert [w.posted for w in wallets] == [100]
    by_identity = Account.objects.values("owner_kind", "owner_id", "purpose", "unit", "shard")
    assert len(by_identity) == len({tuple(a.values()) for a in by_identity})  # no account twice
    assert ledger_verify(seals=False).violations == []


def test_concurrent_post_and_void_resolve_a_hold_once() -> None:
    program, holder = PointsProgramFactory(), CardholderFactory()
    s.points_earn(cardholder_id=holder.pk, program=program, amount=100, idempotency_key="seed")
    hold = s.hold_create(cardholder_id=holder.pk, program=program, amount=60, idempotency_key="h")

    def act(i: int) -> Any:
        if i % 2:
            return s.hold_void(hold_id=hold.pk)
        return s.hold_post(hold_id=hold.pk, amount=60, idempotency_key=f"post{i}")

    results = run_parallel(10, act)
    hold.refresh_from_db()
    posts = [r for r in results if isinstance(r, LedgerTransaction)]
    errors = [r for r in results if isinstance(r, Exception) and not isinstance(r, Conflict)]
    assert errors == []
    wallet = s.wallet_account(holder.pk, program)
    if hold.status == Hold.Status.POSTED:
        assert len(posts) == 1
        assert (wallet.posted, wallet.held) == (40, 0)
    else:
        assert hold.status == Hold.Status.VOIDED
        assert posts == []
        assert (wallet.posted, wallet.held) == (100, 0)
    assert LedgerTransaction.objects.filter(kind="hold_post").count() == len(posts)
    assert ledger_verify(seals=False).violations == []


def test_concurrent_replays_of_one_key_post_once() -> None:
    program, holder = PointsProgramFactory(), CardholderFactory()

    def earn(i: int) -> Any:
        return s.points_earn(cardholder_id=holder.pk, program=program, amount=5, idempotency_key="one")

    results = run_parallel(8, earn)
    assert {r.pk for r in results if isinstance(r, LedgerTransaction)} == {LedgerTransaction.objects.get().pk}
    assert s.wallet_account(holder.pk, program).posted == 5


def _exchanged(amount: int) -> tuple[Any, Any, Any, LedgerTransaction]:
    src = PointsProgramFactory(point_value_cny=Decimal("0.005"))
    dst = PointsProgramFactory(point_value_cny=Decimal("0.003"))
    holder = CardholderFactory()
    s.points_earn(cardholder_id=holder.pk, program=src, amount=amount, idempotency_key="seed")
    exchange = s.points_exchange(
        cardholder_id=holder.pk, from_program=src, to_program=dst, amount=amount, idempotency_key="x"
    )
    return holder, src, dst, exchange


def test_two_parallel_partial_reversals_of_an_exchange_never_exceed_it() -> None:
    holder, src, dst, exchange = _exchanged(1000)  # 1633 target points

    def reverse(i: int) -> Any:
        return s.transaction_reverse(transaction_id=exchange.pk, amount=600, idempotency_key=f"r{i}")

    results = run_parallel(2, reverse)
    assert sorted(type(r).__name__ for r in results) == ["LedgerTransaction", "ValidationFailed"], results
    exchange.refresh_from_db()
    assert exchange.reversed_points == 600
    assert s.wallet_account(holder.pk, src).posted == 600
    assert s.wallet_account(holder.pk, dst).posted == 1633 - 1633 * 600 // 1000
    assert ledger_verify(seals=False).violations == []


def test_parallel_refunds_of_an_exchange_add_up_to_it_exactly() -> None:
    holder, src, dst, exchange = _exchanged(1000)

    def refund(i: int) -> Any:
        # refunds of 1/8 each, arriving in any order: each says how much is refunded so far
        return s.transaction_reverse(
            transaction_id=exchange.pk, refunded_total=i + 1, captured_total=8, idempotency_key=f"refund{i}"
        )

    results = run_parallel(8, refund)
    assert [r for r in results if not (r is None or isinstance(r, LedgerTransaction))] == []
    reversals = LedgerTransaction.objects.filter(reverses=exchange)
    assert sum(r.points for r in reversals) == 1000
    assert sum(r.metadata["points_out"] for r in reversals) == 1633
    exchange.refresh_from_db()
    assert exchange.reversed_points == 1000
    assert (s.wallet_account(holder.pk, src).posted, s.wallet_account(holder.pk, dst).posted) == (1000, 0)
    assert set(Account.objects.filter(unit="CNY").values_list("posted", flat=True)) == {0}
    assert ledger_verify(seals=False).violations == []


@pytest.mark.slow
def test_mixed_soak_keeps_every_invariant() -> None:
    programs = [PointsProgramFactory() for _ in range(3)]
    holders = [CardholderFactory() for _ in range(12)]
    for h in holders:
        for p in programs:
            s.points_earn(cardholder_id=h.pk, program=p, amount=2000, idempotency_key=f"seed:{h.pk}:{p.pk}")
    per_worker = 640  # 8 × 640 = 5,120 operations
    holder_ids = [h.pk for h in holders]

    def worker(w: int) -> dict[str, int]:
        rng = random.Random(w)
        counts: dict[str, int] = {}
        mine: list[int] = []
        holds: list[int] = []
        for n in range(per_worker):
            op = rng.choice(["earn", "redeem", "redeem", "hold", "post", "void", "exchange", "reverse"])
            h, p = rng.choice(holder_ids), rng.choice(programs)
            key = f"w{w}:{n}"
            try:
                if op == "earn":
                    mine.append(
                        s.points_earn(cardholder_id=h, program=p, amount=rng.randint(1, 200), idempotency_key=key).pk
                    )
                elif op == "redeem":
                    mine.append(
                        s.points_redeem(cardholder_id=h, program=p, amount=rng.randint(1, 300), idempotency_key=key).pk
                    )
                elif op == "hold":
                    holds.append(
                        s.hold_create(cardholder_id=h, program=p, amount=rng.randint(1, 200), idempotency_key=key).pk
                    )
                elif op == "post" and holds:
                    s.hold_post(hold_id=holds.pop(rng.randrange(len(holds))), amount=1, idempotency_key=key)
                elif op == "void" and holds:
                    s.hold_void(hold_id=holds.pop(rng.randrange(len(holds))))
                elif op == "exchange":
                    q = rng.choice([x for x in programs if x.pk != p.pk])
                    mine.append(
                        s.points_exchange(
                            cardholder_id=h,
                            from_program=p,
                            to_program=q,
                            amount=rng.randint(100, 400),
                            idempotency_key=key,
                        ).pk
                    )
                elif op == "reverse" and mine:
                    target = mine.pop(rng.randrange(len(mine)))
                    s.transaction_reverse(
                        transaction_id=target, refunded_total=1, captured_total=2, idempotency_key=key
                    )
                counts[op] = counts.get(op, 0) + 1
            except (InsufficientFunds, ValidationFailed) as exc:
                counts[type(exc).__name__] = counts.get(type(exc).__name__, 0) + 1
        return counts

    results = run_parallel(8, worker)
    unexpected = [r for r in results if isinstance(r, Exception)]
    assert unexpected == []
    attempted = sum(sum(r.values()) for r in results)
    assert attempted >= 5000 - 8 * 100  # post/void without an open hold are skipped
    seal_pending()
    report = ledger_verify()
    assert report.violations == []


# --- one key from ten parallel callers, for every posting function ------------------------------------------------


def _seeded(amount: int = 1000) -> tuple[Any, Any]:
    program, holder = PointsProgramFactory(), CardholderFactory()
    s.points_earn(cardholder_id=holder.pk, program=program, amount=amount, idempotency_key="seed")
    return program, holder


def _earn_case() -> Any:
    program, holder = PointsProgramFactory(), CardholderFactory()
    return lambda points: s.points_earn(cardholder_id=holder.pk, program=program, amount=points, idempotency_key="k")


def _redeem_case() -> Any:
    program, holder = _seeded()
    return lambda points: s.points_redeem(cardholder_id=holder.pk, program=program, amount=points, idempotency_key="k")


def _hold_create_case() -> Any:
    program, holder = _seeded()
    return lambda points: s.hold_create(cardholder_id=holder.pk, program=program, amount=points, idempotency_key="k")


def _hold_post_case() -> Any:
    program, holder = _seeded()
    hold = s.hold_create(cardholder_id=holder.pk, program=program, amount=50, idempotency_key="h")
    return lambda points: s.hold_post(hold_id=hold.pk, amount=points, idempotency_key="k")


def _hold_void_case() -> Any:
    program, holder = _seeded()
    holds = [
        s.hold_create(cardholder_id=holder.pk, program=program, amount=10, idempotency_key=f"h{i}") for i in range(2)
    ]
    # A void takes no key: the hold is its key, and "other parameters" is the other hold.
    return lambda points: s.hold_void(hold_id=holds[points % 2].pk)


def _exchange_case() -> Any:
    src = PointsProgramFactory(point_value_cny=Decimal("0.005"))
    dst = PointsProgramFactory(point_value_cny=Decimal("0.003"))
    holder = CardholderFactory()
    s.points_earn(cardholder_id=holder.pk, program=src, amount=1000, idempotency_key="seed")
    return lambda points: s.points_exchange(
        cardholder_id=holder.pk, from_program=src, to_program=dst, amount=100 + points, idempotency_key="k"
    )


def _reverse_case() -> Any:
    _seeded()
    earn = LedgerTransaction.objects.get(idempotency_key="seed")
    return lambda points: s.transaction_reverse(transaction_id=earn.pk, amount=points, idempotency_key="k")


def _bulk_case() -> Any:
    program, holders = PointsProgramFactory(), [CardholderFactory() for _ in range(3)]
    return lambda points: s.points_earn_bulk(
        events=[s.EarnEvent(h.pk, program.pk, points) for h in holders], idempotency_key="k"
    )


@pytest.mark.parametrize(
    "case",
    [
        _earn_case,
        _redeem_case,
        _hold_create_case,
        _hold_post_case,
        _hold_void_case,
        _exchange_case,
        _reverse_case,
        _bulk_case,
    ],
    ids=lambda case: case.__name__.strip("_").removesuffix("_case"),
)
def test_one_key_from_ten_parallel_callers_posts_once(case: Any) -> None:
    """Ten callers with one key and the same parameters all get the first result; none an error."""
    call = case()
    before = LedgerTransaction.objects.count()
    results = run_parallel(10, lambda i: call(10))
    assert [r for r in results if isinstance(r, Exception)] == []
    assert len({(type(r), r.pk) for r in results}) == 1
    posted = LedgerTransaction.objects.count() - before
    assert posted == (0 if case in (_hold_create_case, _hold_void_case) else 1)
    assert ledger_verify(seals=False).violations == []


@pytest.mark.parametrize(
    "case",
    [
        _earn_case,
        _redeem_case,
        _hold_create_case,
        _hold_post_case,
        _exchange_case,
        _reverse_case,
        _bulk_case,
    ],
    ids=lambda case: case.__name__.strip("_").removesuffix("_case"),
)
def test_one_key_with_other_parameters_is_an_idempotency_conflict(case: Any) -> None:
    """Ten callers with one key, two sets of parameters: the first result, or `IdempotencyConflict` — nothing else."""
    from core.errors import IdempotencyConflict

    call = case()
    results = run_parallel(10, lambda i: call(10 + i % 2))
    firsts = [r for r in results if not isinstance(r, Exception)]
    conflicts = [r for r in results if isinstance(r, IdempotencyConflict)]
    assert len(firsts) + len(conflicts) == 10, [r for r in results if isinstance(r, Exception)]
    assert len({r.pk for r in firsts}) == 1
    assert conflicts
    assert ledger_verify(seals=False).violations == []


def test_two_checkers_approving_one_adjustment_at_once_post_it_once() -> None:
    """The approval is one guarded UPDATE: of two checkers at once, one posts; the other is told it was decided."""
    from core.approvals import approval_approve
    from tests.factories import StaffFactory, card_at

    program, holder = _seeded()
    card_at(holder, program.bank)
    # A transactional test starts without the operator groups: alliance-wide superusers check (adjustments allow it).
    maker, checkers = StaffFactory(), [StaffFactory(is_superuser=True), StaffFactory(is_superuser=True)]
    request = s.adjustment_request(
        cardholder_id=holder.pk, program=program, amount=-40, reason="duplicate credit", requested_by=maker
    )
    before = LedgerTransaction.objects.filter(kind="adjust").count()
    results = run_parallel(2, lambda i: approval_approve(request_id=request.pk, checker=checkers[i]))
    assert sorted(type(r).__name__ for r in results) == ["ApprovalRequest", "Conflict"]
    assert all(isinstance(r, Conflict) for r in results if not hasattr(r, "status"))
    assert LedgerTransaction.objects.filter(kind="adjust").count() == before + 1
    assert ledger_verify(seals=False).violations == []

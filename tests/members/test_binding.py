from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from core.errors import Conflict, RateLimited, ValidationFailed
from core.models import AuditLog
from members import services
from members.issuers import SandboxIssuerVerifier
from members.models import BindingChallenge, BindingStatus, Card, LinkedAccount
from tests.factories import BinRangeFactory, MemberBankFactory, card_number_for, make_cardholder

pytestmark = pytest.mark.django_db


def _start(holder: Any, pan: str, verifier: SandboxIssuerVerifier, month: int = 12, year: int = 2031) -> Any:
    return services.card_bind_start(
        cardholder=holder, card_number=pan, expiry_month=month, expiry_year=year, verifier=verifier
    )


def _code(verifier: SandboxIssuerVerifier, holder: Any, challenge: Any) -> str:
    return verifier.code_for(holder.phone_hash, challenge.issuer_reference)


def test_bind_start_then_right_code_activates_the_card(holder: Any, pan: str, bin_range: Any, verifier: Any) -> None:
    challenge = _start(holder, pan, verifier)
    card = challenge.card
    assert card.status == BindingStatus.PENDING
    assert (card.bin, card.last4, card.bank_id, card.product_id) == (
        "622848",
        pan[-4:],
        bin_range.bank_id,
        bin_range.product_id,
    )
    assert card.token.startswith("card_")
    assert len(card.token) == 37
    assert card.fingerprint == services.card_fingerprint(pan)

    bound = services.binding_verify(
        cardholder=holder, challenge_id=challenge.pk, code=_code(verifier, holder, challenge), verifier=verifier
    )
    assert bound.pk == card.pk
    card.refresh_from_db()
    challenge.refresh_from_db()
    assert card.status == BindingStatus.ACTIVE
    assert card.activated_at is not None
    assert (challenge.status, challenge.attempts) == (BindingChallenge.Status.VERIFIED, 1)
    assert AuditLog.objects.filter(action="members.card_bound", object_id=str(card.pk)).count() == 1


@pytest.mark.parametrize(
    ("number", "code"),
    [
        ("4111111111111112", "card_number_invalid"),  # bad Luhn
        ("12345", "card_number_invalid"),  # too short
        ("٤١١١١١١١١١١١١١١١", "card_number_invalid"),  # Arabic-Indic digits, Luhn-valid if read as 4111…
        ("4111 1111 1111 111²", "card_number_invalid"),  # a superscript two: str.isdigit() says yes, int() no
        ("4111111111111111", "card_bin_unknown"),  # Luhn-valid, not a member's BIN
    ],
)
def test_bind_start_refuses_bad_numbers_and_writes_nothing(
    holder: Any, bin_range: Any, verifier: Any, number: str, code: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        _start(holder, number, verifier)
    assert caught.value.code == code
    assert number not in caught.value.message
    assert Card.objects.count() == 0
    assert BindingChallenge.objects.count() == 0


def test_bind_start_refuses_wrong_length_for_the_bin(holder: Any, bin_range: Any, verifier: Any) -> None:
    nineteen = card_number_for(type("B", (), {"prefix": "622848", "card_length": 19})(), 1)
    with pytest.raises(ValidationFailed) as caught:
        _start(holder, nineteen, verifier)
    assert caught.value.code == "card_bin_unknown"


def test_longest_bin_prefix_wins(holder: Any, verifier: Any) -> None:
    short = BinRangeFactory(prefix="622900")
    long = BinRangeFactory(prefix="62290012")
    challenge = _start(holder, card_number_for(long, 5), verifier)
    assert challenge.card.product_id == long.product_id != short.product_id


def test_expired_card_is_refused_with_a_clear_error(holder: Any, pan: str, verifier: Any) -> None:
    last_month = timezone.localtime() - dt.timedelta(days=32)
    with pytest.raises(ValidationFailed) as caught:
        _start(holder, pan, verifier, month=last_month.month, year=last_month.year)
    assert caught.value.code == "card_expired"
    assert f"{last_month.month:02d}/{last_month.year}" in caught.value.message
    # The current month is still valid.
    now = timezone.localtime()
    assert _start(holder, pan, verifier, month=now.month, year=now.year).card.status == BindingStatus.PENDING


def test_duplicate_binding_refused_for_me_and_for_another_cardholder(holder: Any, pan: str, verifier: Any) -> None:
    challenge = _start(holder, pan, verifier)
    services.binding_verify(
        cardholder=holder, challenge_id=challenge.pk, code=_code(verifier, holder, challenge), verifier=verifier
    )
    with pytest.raises(Conflict) as mine:
        _start(holder, pan, verifier)
    assert mine.value.code == "already_bound"
    other = make_cardholder()
    with pytest.raises(Conflict) as theirs:
        _start(other, pan, verifier)
    assert theirs.value.code == "bound_elsewhere"
    assert Card.objects.count() == 1


def test_a_closed_card_can_be_bound_again_by_someone_else(holder: Any, pan: str, verifier: Any) -> None:
    challenge = _start(holder, pan, verifier)
    Card.objects.filter(pk=challenge.card_id).update(status=BindingStatus.CLOSED)
    other = make_cardholder()
    again = _start(other, pan, verifier)
    services.binding_verify(
        cardholder=other, challenge_id=again.pk, code=_code(verifier, other, again), verifier=verifier
    )
    assert Card.objects.get(pk=again.card_id).status == BindingStatus.ACTIVE


def test_wrong_codes_count_and_the_fifth_fails_the_challenge(holder: Any, pan: str, verifier: Any) -> None:
    challenge = _start(holder, pan, verifier)
    right = _code(verifier, holder, challenge)
    wrong = "000000" if right != "000000" else "111111"
    for left in (4, 3, 2, 1):
        with pytest.raises(ValidationFailed) as caught:
            services.binding_verify(cardholder=holder, challenge_id=challenge.pk, code=wrong, verifier=verifier)
        assert caught.value.code == "code_wrong"
        assert f"{left}" in caught.value.message
    with pytest.raises(ValidationFailed) as caught:
        services.binding_verify(cardholder=holder, challenge_id=challenge.pk, code=wrong, verifier=verifier)
    assert caught.value.code == "too_many_attempts"
    challenge.refresh_from_db()
    assert (challenge.status, challenge.attempts) == (BindingChallenge.Status.FAILED, 5)
    assert Card.objects.get(pk=challenge.card_id).status == BindingStatus.CLOSED
    # Even the right code is refused now.
    with pytest.raises(Conflict):
        services.binding_verify(cardholder=holder, challenge_id=challenge.pk, code=right, verifier=verifier)


def test_expired_code_closes_the_pending_card(holder: Any, pan: str, verifier: Any) -> None:
    challenge = _start(holder, pan, verifier)
    code = _code(verifier, holder, challenge)
    BindingChallenge.objects.filter(pk=challenge.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    with pytest.raises(ValidationFailed) as caught:
        services.binding_verify(cardholder=holder, challenge_id=challenge.pk, code=code, verifier=verifier)
    assert caught.value.code == "code_expired"
    challenge.refresh_from_db()
    assert challenge.status == BindingChallenge.Status.EXPIRED
    assert Card.objects.get(pk=challenge.card_id).status == BindingStatus.CLOSED


def test_issuer_side_expiry_is_honoured(holder: Any, pan: str, verifier: Any) -> None:
    challenge = _start(holder, pan, verifier)
    code = _code(verifier, holder, challenge)
    verifier.cache.delete(f"sandbox-issuer:challenge:{challenge.issuer_reference}")
    with pytest.raises(ValidationFailed) as caught:
        services.binding_verify(cardholder=holder, challenge_id=challenge.pk, code=code, verifier=verifier)
    assert caught.value.code == "code_expired"


def test_expiry_task_closes_only_stale_challenges(holder: Any, pan: str, verifier: Any) -> None:
    challenge = _start(holder, pan, verifier)
    assert services.binding_challenge_expire(challenge_id=challenge.pk) is False
    BindingChallenge.objects.filter(pk=challenge.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert services.binding_challenge_expire(challenge_id=challenge.pk) is True
    assert Card.objects.get(pk=challenge.card_id).status == BindingStatus.CLOSED


def test_too_many_bind_starts_per_hour_are_refused(holder: Any, bin_range: Any, verifier: Any) -> None:
    for serial in range(services.MAX_BIND_STARTS_PER_HOUR):
        _start(holder, card_number_for(bin_range, serial), verifier)
    with pytest.raises(RateLimited):
        _start(holder, card_number_for(bin_range, 999), verifier)
    assert Card.objects.count() == services.MAX_BIND_STARTS_PER_HOUR


def test_another_cardholder_cannot_answer_my_challenge(holder: Any, pan: str, verifier: Any) -> None:
    from core.errors import NotFound

    challenge = _start(holder, pan, verifier)
    with pytest.raises(NotFound):
        services.binding_verify(
            cardholder=make_cardholder(),
            challenge_id=challenge.pk,
            code=_code(verifier, holder, challenge),
            verifier=verifier,
        )


def test_freeze_and_unfreeze_are_audited_and_guarded(holder: Any, pan: str, verifier: Any) -> None:
    challenge = _start(holder, pan, verifier)
    card = services.binding_verify(
        cardholder=holder, challenge_id=challenge.pk, code=_code(verifier, holder, challenge), verifier=verifier
    )
    frozen = services.card_freeze(card=card, actor=holder.user)
    assert frozen.status == BindingStatus.FROZEN
    with pytest.raises(Conflict):
        services.card_freeze(card=card, actor=holder.user)
    assert services.card_unfreeze(card=card, actor=holder.user).status == BindingStatus.ACTIVE
    actions = list(AuditLog.objects.filter(object_id=str(card.pk)).values_list("action", flat=True).order_by("id"))
    assert actions[-2:] == ["members.card_freeze", "members.card_unfreeze"]


def test_link_an_account_with_the_members_code(holder: Any, verifier: Any) -> None:
    bank = MemberBankFactory(prepaid_licence=True)
    challenge = services.linked_account_bind_start(
        cardholder=holder, bank=bank, kind="prepaid", account_number="6200 1234 5678 9012", verifier=verifier
    )
    account = challenge.linked_account
    assert (account.status, account.masked_number) == (BindingStatus.PENDING, "•••• 9012")
    services.binding_verify(
        cardholder=holder, challenge_id=challenge.pk, code=_code(verifier, holder, challenge), verifier=verifier
    )
    account.refresh_from_db()
    assert account.status == BindingStatus.ACTIVE
    with pytest.raises(Conflict):
        services.linked_account_bind_start(
            cardholder=make_cardholder(),
            bank=bank,
            kind="prepaid",
            account_number="6200123456789012",
            verifier=verifier,
        )
    with pytest.raises(ValidationFailed):
        services.linked_account_bind_start(
            cardholder=holder,
            bank=MemberBankFactory(prepaid_licence=False),
            kind="prepaid",
            account_number="6200123456789999",
            verifier=verifier,
        )
    assert LinkedAccount.objects.count() == 1


def test_batch_binding_applies_the_same_rules_all_or_nothing(holder: Any, bin_range: Any, verifier: Any) -> None:
    def read(h: Any, ref: str) -> str:
        return verifier.code_for(h.phone_hash, ref)

    good = services.CardBindRequest(holder, card_number_for(bin_range, 1), 12, 2031)
    bad = services.CardBindRequest(holder, "4111111111111112", 12, 2031)
    with pytest.raises(ValidationFailed):
        services.cards_bind_many(requests=[good, bad], verifier=verifier, read_code=read)
    assert Card.objects.count() == 0
    with pytest.raises(ValidationFailed):
        services.cards_bind_many(requests=[good], verifier=verifier, read_code=lambda h, ref: "000000x")
    assert Card.objects.count() == 0
    cards = services.cards_bind_many(requests=[good], verifier=verifier, read_code=read)
    assert [c.status for c in cards] == [BindingStatus.ACTIVE]
    assert BindingChallenge.objects.get(card=cards[0]).status == BindingChallenge.Status.VERIFIED
    with pytest.raises(Conflict):
        services.cards_bind_many(requests=[good], verifier=verifier, read_code=read)


def test_cardholder_registration_encrypts_and_validates() -> None:
    from core.crypto import decrypt
    from members.demo import demo_national_id

    national_id = demo_national_id(7)
    wrong_check = national_id[:17] + ("1" if national_id[17] != "1" else "2")
    holder = make_cardholder(phone="13812345678", national_id=national_id)
    assert holder.phone_encrypted != "13812345678"
    assert decrypt(holder.phone_encrypted) == "13812345678"
    assert holder.masked_phone == "***-****-5678"
    assert holder.masked_national_id.endswith(national_id[-4:])
    assert "1101" not in holder.masked_national_id
    assert holder.national_id_hash == services.national_id_hash(national_id)
    with pytest.raises(Conflict):
        make_cardholder(phone="13812345678")
    with pytest.raises(ValidationFailed):
        make_cardholder(phone="12345")
    with pytest.raises(ValidationFailed):
        make_cardholder(national_id=wrong_check)

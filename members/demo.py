"""Demo data for members: six member banks, their programs, products and BIN table, operators, and cardholders with
verified cards, linked accounts and consents — all through the services (batch services where speed needs them).

Demo card numbers are generated Luhn-valid inside the BIN table; they exist only while binding and are never stored.
Idempotent: what exists is left alone, only what is missing is created.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.cache.backends.locmem import LocMemCache

from core.jobs import job_run
from core.logging import luhn_valid

from . import services
from .issuers import SandboxIssuerVerifier
from .models import (
    BankOperator,
    BinRange,
    Cardholder,
    CardProduct,
    ConsentPurpose,
    ConsentText,
    LinkedAccount,
    MemberBank,
    PointsProgram,
)

SCALES = {"small": 200, "large": 100_000}
CHUNK = 2_000
DEMO_USERNAME = "demo"
DEMO_PASSWORD = "mengka-demo-2026"  # every demo login's, staff and cardholder alike
DEMO_PHONE = "13912345678"


@dataclass(frozen=True)
class BankSpec:
    code: str
    name_zh: str
    name_en: str
    kind: str
    colour: str
    licences: tuple[bool, bool, bool]  # issuing, acquiring, prepaid
    unit: str
    program: str
    program_en: str
    point_value: str
    # code, name, English name, kind, tier, rates, benefits
    products: tuple[tuple[str, str, str, str, str, dict[str, str], str], ...]


BANKS: tuple[BankSpec, ...] = (
    BankSpec(
        "HXSB",
        "华信国有银行",
        "Huaxin State Bank",
        MemberBank.Kind.STATE_OWNED,
        "#c8102e",
        (True, True, False),
        "HXSB-PTS",
        "华信积分",
        "Huaxin Points",
        "0.004",
        (
            (
                "HX-STD",
                "华信标准信用卡",
                "Huaxin Standard Credit Card",
                "credit",
                "standard",
                {"other": "1", "dining": "2"},
                "机场贵宾厅 2 次/年",
            ),
            (
                "HX-GOLD",
                "华信金卡",
                "Huaxin Gold Card",
                "credit",
                "gold",
                {"other": "1", "travel": "3"},
                "机场贵宾厅 6 次/年\n航延险",
            ),
            ("HX-DEBIT", "华信借记卡", "Huaxin Debit Card", "debit", "standard", {"other": "0.5"}, ""),
        ),
    ),
    BankSpec(
        "JHBK",
        "江海银行",
        "Jianghai Bank",
        MemberBank.Kind.JOINT_STOCK,
        "#0a5cad",
        (True, True, False),
        "JHBK-PTS",
        "江海积分",
        "Jianghai Points",
        "0.005",
        (
            (
                "JH-PLAT",
                "江海白金卡",
                "Jianghai Platinum Card",
                "credit",
                "platinum",
                {"other": "1", "overseas": "4"},
                "全球贵宾厅不限次",
            ),
            (
                "JH-ONLINE",
                "江海网购卡",
                "Jianghai Online Shopping Card",
                "credit",
                "standard",
                {"other": "1", "online": "3"},
                "",
            ),
        ),
    ),
    BankSpec(
        "MFBK",
        "明丰银行",
        "Mingfeng Bank",
        MemberBank.Kind.JOINT_STOCK,
        "#e5a100",
        (True, True, False),
        "MFBK-PTS",
        "明丰积分",
        "Mingfeng Points",
        "0.005",
        (
            (
                "MF-DRIVE",
                "明丰车主卡",
                "Mingfeng Motorist Card",
                "credit",
                "gold",
                {"other": "1", "fuel": "5"},
                "道路救援",
            ),
            (
                "MF-DINE",
                "明丰美食卡",
                "Mingfeng Dining Card",
                "co_branded",
                "standard",
                {"other": "1", "dining": "5"},
                "餐厅 5 折封顶 50 元",
            ),
            (
                "MF-DIAM",
                "明丰钻石卡",
                "Mingfeng Diamond Card",
                "credit",
                "diamond",
                {"other": "2", "travel": "5"},
                "礼宾服务",
            ),
            ("MF-DEBIT", "明丰借记卡", "Mingfeng Debit Card", "debit", "standard", {"other": "0.5"}, ""),
        ),
    ),
    BankSpec(
        "JHCC",
        "锦湖城市商业银行",
        "Jinhu City Commercial Bank",
        MemberBank.Kind.CITY_COMMERCIAL,
        "#00875a",
        (True, True, False),
        "JHCC-PTS",
        "锦湖积分",
        "Jinhu Points",
        "0.003",
        (
            (
                "JC-CITY",
                "锦湖市民卡",
                "Jinhu Citizen Card",
                "co_branded",
                "standard",
                {"other": "1", "groceries": "3"},
                "地铁乘车优惠",
            ),
            ("JC-GOLD", "锦湖金卡", "Jinhu Gold Card", "credit", "gold", {"other": "1.5"}, ""),
        ),
    ),
    BankSpec(
        "QSRC",
        "青山农村商业银行",
        "Qingshan Rural Commercial Bank",
        MemberBank.Kind.RURAL_COMMERCIAL,
        "#4b7f2a",
        (True, False, False),
        "QSRC-PTS",
        "青山积分",
        "Qingshan Points",
        "0.002",
        (
            (
                "QS-FARM",
                "青山惠农卡",
                "Qingshan Farmers' Card",
                "debit",
                "standard",
                {"other": "1", "groceries": "2"},
                "农资采购返现",
            ),
            ("QS-CREDIT", "青山信用卡", "Qingshan Credit Card", "credit", "standard", {"other": "1"}, ""),
        ),
    ),
    BankSpec(
        "YYPAY",
        "银盈支付",
        "Yinying Pay",
        MemberBank.Kind.PAYMENT_INSTITUTION,
        "#7b3fa0",
        (False, True, True),
        "YYPAY-PTS",
        "银盈币",
        "Yinying Coins",
        "0.01",
        (
            (
                "YY-PREPAID",
                "银盈预付卡",
                "Yinying Prepaid Card",
                "prepaid",
                "standard",
                {"other": "1", "online": "2"},
                "",
            ),
            ("YY-GIFT", "银盈礼品卡", "Yinying Gift Card", "prepaid", "gold", {"other": "1"}, "节日礼品包装"),
        ),
    ),
)

CONSENT_TEXTS = {
    ConsentPurpose.SHARE_HOLDINGS: (
        "我同意盟卡在联盟成员银行之间共享我持有的卡片与积分信息，用于统一积分钱包与跨行权益。",
        "I agree that Mengka shares which cards and points I hold among the alliance's member banks, for the joint "
        "points wallet and cross-bank benefits.",
    ),
    ConsentPurpose.PERSONALISED_OFFERS: (
        "我同意盟卡根据我的持卡与消费情况为我推荐个性化的优惠与权益。",
        "I agree that Mengka recommends offers and benefits to me based on my cards and spending.",
    ),
    ConsentPurpose.MARKETING: (
        "我同意接收盟卡及成员银行的营销信息，可随时退订。",
        "I agree to receive marketing messages from Mengka and member banks; I can unsubscribe at any time.",
    ),
}


def demo_apply_url(bank: MemberBank, product_code: str) -> str:
    """The product's application page on its bank's example domain (reserved: it never resolves)."""
    return f"https://{bank.code.lower()}.example/apply/{product_code}"


def _bin_prefix(bank_index: int, product_index: int) -> str:
    return f"6288{bank_index}{product_index}"


def demo_card_number(prefix: str, serial: int, length: int = 16) -> str:
    """A Luhn-valid number inside `prefix` (demo only; used at bind time and never stored)."""
    body = prefix + f"{serial:0{length - len(prefix) - 1}d}"
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def demo_national_id(index: int) -> str:
    born = dt.date(1960, 1, 1) + dt.timedelta(days=index % 15_000)
    body = f"110101{born:%Y%m%d}{index % 1000:03d}"
    for check in "0123456789X":
        if services.national_id_valid(body + check):
            return body + check
    raise AssertionError("unreachable: one check character always fits")


def _seed_alliance(ctx: Any) -> list[tuple[MemberBank, list[BinRange]]]:
    joined = dt.date(2025, 1, 1)
    result = []
    for bank_index, spec in enumerate(BANKS, start=1):
        bank = MemberBank.objects.filter(code=spec.code).first() or services.bank_create(
            code=spec.code,
            name_zh=spec.name_zh,
            name_en=spec.name_en,
            kind=spec.kind,
            joined_on=joined,
            brand_colour=spec.colour,
            issuing_licence=spec.licences[0],
            acquiring_licence=spec.licences[1],
            prepaid_licence=spec.licences[2],
        )
        if not PointsProgram.objects.filter(bank=bank).exists():
            services.program_create(
                bank=bank,
                unit_code=spec.unit,
                name=spec.program,
                name_en=spec.program_en,
                point_value_cny=Decimal(spec.point_value),
            )
        bins = []
        for product_index, (code, name, name_en, kind, tier, rates, benefits) in enumerate(spec.products, start=1):
            product = CardProduct.objects.filter(bank=bank, code=code).first() or services.product_create(
                bank=bank,
                code=code,
                name=name,
                name_en=name_en,
                kind=kind,
                tier=tier,
                earning_rates=rates,
                cashback_rates={"other": "0.001"} if kind == "debit" else {},
                included_benefits=benefits,
                feature_tags=[tier, kind],
                apply_url=demo_apply_url(bank, code),
            )
            if not product.apply_url:  # seeded before products had an application page
                CardProduct.objects.filter(pk=product.pk).update(apply_url=demo_apply_url(bank, code))
            prefix = _bin_prefix(bank_index, product_index)
            bins.append(
                BinRange.objects.filter(prefix=prefix).first()
                or services.bin_range_create(product=product, prefix=prefix)
            )
        result.append((bank, bins))
    for purpose, (text_zh, text_en) in CONSENT_TEXTS.items():
        if not ConsentText.objects.filter(purpose=purpose).exists():
            services.consent_text_publish(purpose=purpose, text_zh=text_zh, text_en=text_en)
            if purpose == ConsentPurpose.MARKETING:  # a second version, so the history shows versioning
                services.consent_text_publish(
                    purpose=purpose, text_zh=text_zh + "（2026 修订）", text_en=text_en + " (2026)"
                )
    return result


def _seed_operators(ctx: Any, banks: Sequence[MemberBank]) -> None:
    User = get_user_model()
    encoded = make_password(DEMO_PASSWORD)  # one hash for all the demo staff: seeding stays fast
    staff = [(f"op_{bank.code.lower()}", bank, BankOperator.Role.OPERATOR) for bank in banks]
    staff.append((f"auditor_{banks[0].code.lower()}", banks[0], BankOperator.Role.AUDITOR))
    for username, bank, role in staff:
        user, created = User.objects.get_or_create(username=username, defaults={"is_staff": True})
        if created:
            user.password = encoded
            user.save(update_fields=["password"])
        if not BankOperator.objects.filter(user=user, bank=bank).exists():
            services.bank_operator_add(user=user, bank=bank, role=role)
        label = "bank operator" if role == BankOperator.Role.OPERATOR else "bank auditor"
        ctx.login(f"{label} {bank.code} (admin)", username)


def _people(indexes: Sequence[int]) -> list[services.NewCardholder]:
    return [
        services.NewCardholder(
            username=f"holder{i:06d}",
            display_name=f"持卡人{i:06d}",
            phone=f"138{i:08d}",
            national_id=demo_national_id(i) if i % 2 else "",
            verification_level=Cardholder.VerificationLevel.VERIFIED if i % 2 else Cardholder.VerificationLevel.BASIC,
        )
        for i in indexes
    ]


def _card_requests(
    holders: Sequence[tuple[int, Cardholder]], alliance: Sequence[tuple[MemberBank, list[BinRange]]]
) -> Iterator[services.CardBindRequest]:
    for i, holder in holders:
        for k in range(1 + i % 3):  # one to three cards, each at a different bank
            _bank, bins = alliance[(i + k * 2) % len(alliance)]
            bin_range = bins[i % len(bins)]
            yield services.CardBindRequest(
                cardholder=holder,
                card_number=demo_card_number(bin_range.prefix, i, bin_range.card_length),
                expiry_month=1 + i % 12,
                expiry_year=2028 + i % 5,
            )


def seed_members(ctx: Any) -> None:
    alliance = _seed_alliance(ctx)
    banks = [bank for bank, _bins in alliance]
    _seed_operators(ctx, banks)
    verifier = SandboxIssuerVerifier(cache=LocMemCache("members-demo", {"OPTIONS": {"MAX_ENTRIES": 1_000_000}}))
    verifier.announce = False

    def read_code(holder: Cardholder, reference: str) -> str:
        return verifier.code_for(holder.phone_hash, reference)

    _seed_demo_holder(ctx, alliance, verifier, read_code)

    target = SCALES.get(ctx.scale, SCALES["small"])
    existing = set(
        Cardholder.objects.filter(user__username__startswith="holder").values_list("user__username", flat=True)
    )
    missing = [i for i in range(1, target + 1) if f"holder{i:06d}" not in existing]
    if not missing:
        return
    wallet_bank = next(bank for bank in banks if bank.prepaid_licence)
    with job_run("members.seed_demo", period=ctx.scale, total=len(missing), echo=ctx.out) as run:
        for start in range(0, len(missing), CHUNK):
            indexes = missing[start : start + CHUNK]
            holders = services.cardholders_register_many(people=_people(indexes))
            pairs = list(zip(indexes, holders, strict=True))
            cards = services.cards_bind_many(
                requests=list(_card_requests(pairs, alliance)), verifier=verifier, read_code=read_code
            )
            accounts = services.linked_accounts_bind_many(
                requests=[
                    services.AccountBindRequest(
                        cardholder=holder,
                        bank=wallet_bank,
                        kind=LinkedAccount.Kind.WALLET,
                        account_number=f"YY{i:012d}",
                    )
                    for i, holder in pairs
                    if i % 5 == 0
                ],
                verifier=verifier,
                read_code=read_code,
            )
            services.consents_grant_many(
                cardholders=[h for i, h in pairs if i % 2 == 0], purpose=ConsentPurpose.SHARE_HOLDINGS
            )
            services.consents_grant_many(
                cardholders=[h for i, h in pairs if i % 3 == 0], purpose=ConsentPurpose.PERSONALISED_OFFERS
            )
            services.consents_grant_many(
                cardholders=[h for i, h in pairs if i % 4 == 1], purpose=ConsentPurpose.MARKETING
            )
            services.consents_withdraw_many(
                cardholders=[h for i, h in pairs if i % 12 == 1], purpose=ConsentPurpose.MARKETING
            )
            run.advance(len(holders), cards=len(cards), accounts=len(accounts))


def _seed_demo_holder(
    ctx: Any, alliance: Sequence[tuple[MemberBank, list[BinRange]]], verifier: SandboxIssuerVerifier, read_code: Any
) -> None:
    """The login to try the portal with: cards at three banks, a wallet, and one consent of each kind of state."""
    ctx.login("cardholder (portal, cards at 3 banks)", DEMO_USERNAME)
    ctx.demo_cardholder = DEMO_USERNAME  # later steps give this login payments of its own
    if Cardholder.objects.filter(user__username=DEMO_USERNAME).exists():
        return
    holder = services.cardholder_register(
        username=DEMO_USERNAME,
        display_name="王小明",
        phone=DEMO_PHONE,
        national_id=demo_national_id(7),
        password=DEMO_PASSWORD,
        verification_level=Cardholder.VerificationLevel.VERIFIED,
    )
    serial = 900_000_000
    requests = [
        services.CardBindRequest(
            cardholder=holder,
            card_number=demo_card_number(alliance[b][1][0].prefix, serial + b),
            expiry_month=6,
            expiry_year=2030,
        )
        for b in (0, 1, 3)
    ]
    services.cards_bind_many(requests=requests, verifier=verifier, read_code=read_code)
    wallet_bank = next(bank for bank, _bins in alliance if bank.prepaid_licence)
    services.linked_accounts_bind_many(
        requests=[
            services.AccountBindRequest(
                cardholder=holder, bank=wallet_bank, kind=LinkedAccount.Kind.WALLET, account_number="YY900000000001"
            )
        ],
        verifier=verifier,
        read_code=read_code,
    )
    services.consent_grant(cardholder=holder, purpose=ConsentPurpose.SHARE_HOLDINGS)
    services.consent_grant(cardholder=holder, purpose=ConsentPurpose.MARKETING)
    services.consent_withdraw(cardholder=holder, purpose=ConsentPurpose.MARKETING)

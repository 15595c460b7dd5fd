"""Members' writes, one module per concern; other apps, views, the admin, the jobs and the demo call these names.

banks            banks, their points programmes, card products, BIN ranges and operators
cardholders      registering cardholders; checking and hashing their phone and resident ID numbers
binding          what binding a card and linking an account share: the checks, the issuer's code and its expiry
cards            binding cards (the card number lives only in memory there), freezing and unfreezing them
linked_accounts  linking balance accounts at member banks (the account number, likewise)
consents         consent texts, and cardholders' grants and withdrawals
common           who acts (used by the others)
"""

from core.errors import Conflict  # raised by these services; callers holding the package catch `services.Conflict`

from .banks import bank_create, bank_operator_add, bin_range_create, product_create, program_create
from .binding import MAX_BIND_STARTS_PER_HOUR, MAX_CODE_ATTEMPTS, binding_challenge_expire, binding_verify
from .cardholders import (
    NewCardholder,
    cardholder_register,
    cardholders_register_many,
    name_hash,
    national_id_hash,
    national_id_valid,
    phone_hash,
    segment_tags_parse,
    segment_tags_sync,
)
from .cards import CardBindRequest, card_bind_start, card_fingerprint, card_freeze, card_unfreeze, cards_bind_many
from .consents import (
    WithdrawalHook,
    consent_grant,
    consent_text_publish,
    consent_withdraw,
    consent_withdrawal_hook,
    consents_grant_many,
    consents_withdraw_many,
)
from .linked_accounts import (
    AccountBindRequest,
    account_fingerprint,
    linked_account_bind_start,
    linked_accounts_bind_many,
)

__all__ = [
    "MAX_BIND_STARTS_PER_HOUR",
    "MAX_CODE_ATTEMPTS",
    "AccountBindRequest",
    "CardBindRequest",
    "Conflict",
    "NewCardholder",
    "WithdrawalHook",
    "account_fingerprint",
    "bank_create",
    "bank_operator_add",
    "bin_range_create",
    "binding_challenge_expire",
    "binding_verify",
    "card_bind_start",
    "card_fingerprint",
    "card_freeze",
    "card_unfreeze",
    "cardholder_register",
    "cardholders_register_many",
    "cards_bind_many",
    "consent_grant",
    "consent_text_publish",
    "consent_withdraw",
    "consent_withdrawal_hook",
    "consents_grant_many",
    "consents_withdraw_many",
    "linked_account_bind_start",
    "linked_accounts_bind_many",
    "name_hash",
    "national_id_hash",
    "national_id_valid",
    "phone_hash",
    "product_create",
    "program_create",
    "segment_tags_parse",
    "segment_tags_sync",
]

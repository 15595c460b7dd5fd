"""Merchants' writes, one module per concern; other apps, views, the API, the admin and the jobs call these names.

onboarding  merchants, and the applications their sponsor bank's operators approve or reject
settlement  a merchant's settlement account and its changes (an approval request, four eyes)
freeze      freezing a merchant's payouts (at once) and lifting the freeze (an approval request, four eyes)
api_keys    secret keys: issued, rotated, revoked, their use recorded
key_deliveries  new keys sent to the merchant's contact by one-time links, never shown to an operator
stores      a merchant's stores
endpoints   webhook endpoints
events      events, written with their deliveries in the changing transaction (the outbox)
deliveries  sending deliveries to the endpoints' checked addresses, signed, with retries
common      public ids and the sponsor bank's operators' say (used by the others)
"""

from .api_keys import IssuedKey, api_key_create, api_key_hash, api_key_revoke, api_key_rotate, api_key_touch
from .common import merchant_request_bank, merchant_request_line, new_public_id, require_operator_of
from .deliveries import (
    MAX_ATTEMPTS,
    RETRY_DELAYS,
    BlockedHost,
    WebhookTarget,
    webhook_deliver,
    webhook_deliveries_due,
    webhook_delivery_resend,
    webhook_resends_due,
    webhook_signature,
    webhook_target,
)
from .endpoints import CreatedEndpoint, webhook_endpoint_create, webhook_endpoint_delete, webhook_endpoint_update
from .events import EVENT_TYPES, event_body, event_emit, events_emit
from .freeze import (
    PAYOUTS_UNFREEZE,
    PAYOUTS_UNFREEZE_KIND,
    payouts_freeze,
    payouts_unfreeze_apply,
    payouts_unfreeze_check,
    payouts_unfreeze_request,
    unfreeze_requests_pending,
)
from .key_deliveries import (
    CollectedKey,
    KeysSent,
    api_key_rotate_and_deliver,
    key_contact,
    key_deliveries_send,
    key_delivery_check,
    key_delivery_collect,
)
from .onboarding import (
    ApprovedApplication,
    merchant_application_approve,
    merchant_application_reject,
    merchant_application_submit,
    merchant_create,
)
from .settlement import (
    ACCOUNT_CHANGE_PERMISSION,
    SETTLEMENT_ACCOUNT_CHANGE,
    SETTLEMENT_ACCOUNT_CHANGE_KIND,
    settlement_account_check,
    settlement_change_apply,
    settlement_change_request,
)
from .stores import store_create

__all__ = [
    "ACCOUNT_CHANGE_PERMISSION",
    "EVENT_TYPES",
    "MAX_ATTEMPTS",
    "PAYOUTS_UNFREEZE",
    "PAYOUTS_UNFREEZE_KIND",
    "RETRY_DELAYS",
    "SETTLEMENT_ACCOUNT_CHANGE",
    "SETTLEMENT_ACCOUNT_CHANGE_KIND",
    "ApprovedApplication",
    "BlockedHost",
    "CollectedKey",
    "CreatedEndpoint",
    "IssuedKey",
    "KeysSent",
    "WebhookTarget",
    "api_key_create",
    "api_key_hash",
    "api_key_revoke",
    "api_key_rotate",
    "api_key_rotate_and_deliver",
    "api_key_touch",
    "event_body",
    "event_emit",
    "events_emit",
    "key_contact",
    "key_deliveries_send",
    "key_delivery_check",
    "key_delivery_collect",
    "merchant_application_approve",
    "merchant_application_reject",
    "merchant_application_submit",
    "merchant_create",
    "merchant_request_bank",
    "merchant_request_line",
    "new_public_id",
    "payouts_freeze",
    "payouts_unfreeze_apply",
    "payouts_unfreeze_check",
    "payouts_unfreeze_request",
    "require_operator_of",
    "settlement_account_check",
    "settlement_change_apply",
    "settlement_change_request",
    "store_create",
    "unfreeze_requests_pending",
    "webhook_deliver",
    "webhook_deliveries_due",
    "webhook_delivery_resend",
    "webhook_endpoint_create",
    "webhook_endpoint_delete",
    "webhook_endpoint_update",
    "webhook_resends_due",
    "webhook_signature",
    "webhook_target",
]

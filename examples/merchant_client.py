"""A minimal merchant integration: a till takes the payment code a cardholder shows, pays, captures, refunds, lists;
asks a cardholder for an agreement (协议支付) through the page Mengka hosts; and a webhook's signature verified. Needs
only httpx.

Against `make run` (which prints the demo merchants' test keys and the demo cardholder's sign-in):

    MENGKA_KEY=sk_test_... python examples/merchant_client.py

`MENGKA_SITE` (default http://127.0.0.1:8000) is where the cardholder's phone gets its code; `MENGKA_API` (default
the site's /api/v1) where the till calls; `MENGKA_CARDHOLDER` and `MENGKA_PASSWORD` (defaults: the demo cardholder's)
whose phone it is.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
import uuid
from typing import Any

import httpx


class MengkaError(Exception):
    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(f"{status} {error.get('code')}: {error.get('message')} (param: {error.get('param')})")
        self.status = status
        self.error = error


class Mengka:
    def __init__(
        self, base_url: str, key: str, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout, transport=transport
        )

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
        headers = {}
        if method == "POST":
            # One key per logical operation; a retry of the same call reuses it and is replayed, never run twice.
            headers["Idempotency-Key"] = str(uuid.uuid4())
        for attempt in range(3):
            response = self.http.request(method, path, json=body, params=params or None, headers=headers)
            if response.status_code == 429 or (response.status_code == 409 and _in_progress(response)):
                time.sleep(float(response.headers.get("Retry-After", 1)) * (attempt + 1))
                continue
            break
        if response.status_code >= 400:
            raise MengkaError(response.status_code, response.json()["error"])
        return response.json()

    def pay(self, amount: int, code: str, *, capture: str = "automatic", reference: str = "") -> Any:
        """Pays by the payment code the till scanned: confirmed at once, captured at once unless `capture="manual"`."""
        return self._pay(amount, {"type": "payment_code", "code": code}, capture, reference)

    def pay_by_token(self, amount: int, token: str, *, capture: str = "automatic", reference: str = "") -> Any:
        """Test mode only: pays by a card token its holder shared (the sandbox's way, no till needed)."""
        return self._pay(amount, {"type": "card_token", "token": token}, capture, reference)

    def _pay(self, amount: int, method: dict[str, str], capture: str, reference: str) -> Any:
        return self._call(
            "POST",
            "/payments",
            {
                "amount": amount,
                "currency": "CNY",
                "confirm": True,
                "capture_method": capture,
                "payment_method": method,
                "merchant_reference": reference,
            },
        )

    def pay_by_agreement(self, amount: int, agreement: dict[str, Any], token: str) -> Any:
        """Pays by an agreement's token: type `agreement` for a card's, `balance` for a linked balance's."""
        method = "balance" if agreement["funding"]["type"] == "balance" else "agreement"
        return self._pay(amount, {"type": method, "token": token}, "automatic", "")

    def request_agreement(self, per_payment: int, per_month: int, purpose: str, return_url: str) -> Any:
        """Asks for an agreement: send the cardholder to the answer's `url`; they come back to `return_url` with
        `agreement_request` and `status` in the query."""
        body = {"limits": {"per_payment": per_payment, "per_month": per_month}, "purpose": purpose}
        return self._call("POST", "/agreement-requests", {**body, "return_url": return_url})

    def agreement_request(self, request_id: str) -> Any:
        return self._call("GET", f"/agreement-requests/{request_id}")

    def agreement(self, agreement_id: str) -> Any:
        """The agreement; its `token` only on the first read after the grant (keep it then: it is never shown
        again)."""
        return self._call("GET", f"/agreements/{agreement_id}")

    def capture(self, payment_id: str, amount: int | None = None) -> Any:
        return self._call("POST", f"/payments/{payment_id}/capture", {} if amount is None else {"amount": amount})

    def refund(self, payment_id: str, amount: int | None = None, reason: str = "") -> Any:
        body: dict[str, Any] = {"payment": payment_id, "reason": reason}
        if amount is not None:
            body["amount"] = amount
        return self._call("POST", "/refunds", body)

    def payments(self, **filters: Any) -> Any:
        """Every payment matching the filters, page by page."""
        starting_after = None
        while True:
            params = {"limit": 100, **filters, **({"starting_after": starting_after} if starting_after else {})}
            page = self._call("GET", "/payments", **params)
            yield from page["data"]
            if not page["has_more"]:
                return
            starting_after = page["data"][-1]["id"]


def code_on_the_phone(site: str, username: str, password: str, *, transport: httpx.BaseTransport | None = None) -> str:
    """The payment code a cardholder's phone shows, as the till scans it: the cardholder signs in to the portal and
    opens the pay page, which shows a one-time code (a QR code and its 18 digits, valid for a minute). The till never
    learns how the code was made; it reads the digits (or the QR code, which carries them) and sends them to the API."""
    with httpx.Client(base_url=site, transport=transport, follow_redirects=True, timeout=30) as phone:
        phone.get("/accounts/login/")
        signed_in = phone.post(
            "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": phone.cookies["csrftoken"]},
        )
        if "/accounts/login/" in str(signed_in.url):
            raise RuntimeError(f"{username} could not sign in to the portal")
        page = phone.get("/portal/pay/code/").text
        source = re.search(r'<option value="(card:\d+)"', page) or re.search(r'<option value="([a-z]+:\d+)"', page)
        if source is None:
            raise RuntimeError(f"{username} has no active card or balance to pay with")
        shown = phone.post(
            "/portal/pay/code/",
            data={"source": source.group(1), "csrfmiddlewaretoken": phone.cookies["csrftoken"]},
            headers={"X-Requested-With": "fetch"},
        )
        digits = re.search(r'<p class="digits">([\d ]+)</p>', shown.text)
        if digits is None:
            raise RuntimeError("the pay page showed no code")
        return digits.group(1).replace(" ", "")


def grant_on_the_phone(url: str, username: str, password: str, *, transport: httpx.BaseTransport | None = None) -> str:
    """The cardholder's part of an agreement request, as a person does it in the browser: open the request's page,
    sign in, pick a card and grant. Returns where the page sent them back (the merchant's return URL)."""
    with httpx.Client(transport=transport, follow_redirects=False, timeout=30) as phone:
        site = str(httpx.URL(url).copy_with(path="/", query=None))
        phone.get(f"{site}accounts/login/")
        signed_in = phone.post(
            f"{site}accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": phone.cookies["csrftoken"]},
        )
        if signed_in.status_code != 302:
            raise RuntimeError(f"{username} could not sign in to the portal")
        page = phone.get(url).text
        source = re.search(r'<option value="(card:\d+)"', page) or re.search(r'<option value="([a-z]+:\d+)"', page)
        if source is None:
            raise RuntimeError(f"{username} has no active card or balance to grant")
        granted = phone.post(
            url,
            data={"source": source.group(1), "decision": "grant", "csrfmiddlewaretoken": phone.cookies["csrftoken"]},
        )
        if granted.status_code != 302:
            raise RuntimeError(f"the grant page answered {granted.status_code}")
        return granted.headers["Location"]


def _in_progress(response: httpx.Response) -> bool:
    return bool(response.json().get("error", {}).get("code") == "idempotency_in_progress")


def verify_webhook(header: str, body: bytes, secret: str, tolerance: int = 300) -> bool:
    parts = dict(item.split("=", 1) for item in header.split(","))
    timestamp = int(parts["t"])
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def main() -> None:
    site = os.environ.get("MENGKA_SITE", "http://127.0.0.1:8000")
    client = Mengka(os.environ.get("MENGKA_API", f"{site}/api/v1"), os.environ["MENGKA_KEY"])
    cardholder = os.environ.get("MENGKA_CARDHOLDER", "demo"), os.environ.get("MENGKA_PASSWORD", "mengka-demo-2026")

    code = code_on_the_phone(site, *cardholder)  # scanned at the till
    print("scanned code", code[:4], "…")
    held = client.pay(12000, code, capture="manual", reference="example-1")
    print("authorised", held["id"], held["status"])
    captured = client.capture(held["id"], 10000)
    print("captured", captured["amount_captured"], "points", captured["points_earned"])
    refund = client.refund(held["id"], 2500, "returned")
    print("refunded", refund["amount"], refund["status"])
    try:
        client.pay(500, code)  # a code pays once
    except MengkaError as exc:
        print("error", exc)
    # The sandbox declines amounts ending in 51: a failed payment, not an error.
    declined = client.pay(10051, code_on_the_phone(site, *cardholder))
    print("declined", declined["status"], declined["failure_code"])
    try:
        client.refund(declined["id"])
    except MengkaError as exc:
        print("error", exc)
    print("succeeded payments:", sum(1 for _ in client.payments(status="succeeded")))

    # An agreement: the cardholder grants it on Mengka's page, then the merchant collects the token once.
    asked = client.request_agreement(20000, 100000, "Example subscription", "https://shop.example/agreements/done")
    assert client.agreement_request(asked["id"])["status"] == "pending"
    print("agreement request", asked["id"], asked["status"])
    print("  open", asked["url"], "as the cardholder and grant it; you come back to the return URL with")
    print("  ?agreement_request=…&status=granted. Then GET /agreement-requests/{id} names the agreement, and the first")
    print("  GET /agreements/{agreement} returns its token (or listen for agreement.granted).")


if __name__ == "__main__":
    main()

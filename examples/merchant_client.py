"""A minimal merchant integration: pay, capture, refund, list, verify a webhook. Needs only httpx.

    MENGKA_API=http://127.0.0.1:8000/api/v1 MENGKA_KEY=sk_test_... MENGKA_CARD_TOKEN=card_... \
        python examples/merchant_client.py
"""

from __future__ import annotations

import hashlib
import hmac
import os
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

    def pay(self, amount: int, token: str, *, capture: str = "automatic", reference: str = "") -> Any:
        return self._call(
            "POST",
            "/payments",
            {
                "amount": amount,
                "currency": "CNY",
                "confirm": True,
                "capture_method": capture,
                "payment_method": {"type": "card_token", "token": token},
                "merchant_reference": reference,
            },
        )

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
    client = Mengka(os.environ.get("MENGKA_API", "http://127.0.0.1:8000/api/v1"), os.environ["MENGKA_KEY"])
    token = os.environ["MENGKA_CARD_TOKEN"]
    held = client.pay(12000, token, capture="manual", reference="example-1")
    print("authorised", held["id"], held["status"])
    captured = client.capture(held["id"], 10000)
    print("captured", captured["amount_captured"], "points", captured["points_earned"])
    refund = client.refund(held["id"], 2500, "returned")
    print("refunded", refund["amount"], refund["status"])
    declined = client.pay(10051, token)  # the sandbox declines amounts ending in 51: a failed payment, not an error
    print("declined", declined["status"], declined["failure_code"])
    try:
        client.refund(declined["id"])
    except MengkaError as exc:
        print("error", exc)
    print("succeeded payments:", sum(1 for _ in client.payments(status="succeeded")))


if __name__ == "__main__":
    main()

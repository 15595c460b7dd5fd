"""Webhook deliveries resolve the endpoint's host once, check the addresses, and connect to the address checked.

A name that answers a public address to the check and a private one to a second lookup (DNS rebinding) must not
reach the private address: the tests' resolver answers differently on each lookup and counts them, and every TCP
connection is recorded.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from merchants import services
from merchants.models import WebhookDelivery
from tests.api.conftest import World

pytestmark = pytest.mark.django_db

HOST = "hooks.shop.example"
PUBLIC = "93.184.216.34"


class Resolver:
    """Answers the given names from a script (one answer per lookup, the last one repeating); others as usual."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.scripts: dict[str, list[list[str]]] = {}
        self.lookups: list[str] = []

    def answer(self, name: str, *answers: list[str]) -> None:
        self.scripts[name] = list(answers)

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in self.scripts:
            return self.real(host, port, *args, **kwargs)
        self.lookups.append(name)
        script = self.scripts[name]
        addresses = script.pop(0) if len(script) > 1 else script[0]
        infos = []
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, int(port or 0), 0, 0) if family == socket.AF_INET6 else (address, int(port or 0))
            infos.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return infos


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Resolver:
    fake = Resolver(socket.getaddrinfo)
    # The module attribute: both our lookup and socket.create_connection's (httpx's connect) go through it.
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every TCP connection opened; only loopback ones are really made (the tests never leave the machine)."""
    opened: list[tuple[str, int]] = []
    real = socket.create_connection

    def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        opened.append((address[0], int(address[1])))
        if not ipaddress.ip_address(address[0]).is_loopback:
            raise ConnectionRefusedError(f"test: no connection to {address[0]}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return opened


class Receiver:
    """A webhook receiver on 127.0.0.1, plain or TLS; records each request and the TLS server name it was asked for."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.server_names: list[str | None] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        if tls is not None:
            tls.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)  # type: ignore[assignment]
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def _deliver(world: World, url: str) -> WebhookDelivery:
    services.webhook_endpoint_create(merchant=world.merchant, url=url, event_types=[])
    event = services.event_emit(merchant=world.merchant, type="payment.created", payload={"id": "pay_x"})
    return services.webhook_deliver(delivery_id=WebhookDelivery.objects.get(event=event).pk)


def test_a_name_resolving_to_loopback_is_refused(
    world: World, receiver: Receiver, resolver: Resolver, connections: list[Any], settings: Any
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False
    resolver.answer(HOST, ["127.0.0.1"])
    delivery = _deliver(world, f"http://{HOST}:{receiver.port}/hooks")
    assert (delivery.attempts, delivery.response_code, delivery.status) == (1, None, "pending")
    assert delivery.last_error == f"BlockedHost: {HOST} resolves to a non-public address"
    assert (receiver.requests, connections) == ([], [])


def test_rebinding_to_loopback_after_the_check_does_not_reach_it(
    world: World, receiver: Receiver, resolver: Resolver, connections: list[Any], settings: Any
) -> None:
    """Public to the check, loopback to any later lookup: the connection goes to the public address checked."""
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False
    resolver.answer(HOST, [PUBLIC], ["127.0.0.1"])
    delivery = _deliver(world, f"http://{HOST}:{receiver.port}/hooks")
    assert resolver.lookups == [HOST]  # resolved once
    assert connections == [(PUBLIC, receiver.port)]
    assert receiver.requests == []  # a second lookup would have led here
    assert delivery.last_error.startswith("ConnectError")


def test_the_connection_goes_to_the_checked_address_with_the_endpoints_host(
    world: World, receiver: Receiver, resolver: Resolver, connections: list[Any]
) -> None:
    # Private hosts allowed (the receiver is on loopback); the later answer would lead nowhere.
    resolver.answer(HOST, ["127.0.0.1"], ["10.255.255.1"])
    delivery = _deliver(world, f"http://{HOST}:{receiver.port}/hooks?from=mengka")
    assert (delivery.status, delivery.response_code) == ("succeeded", 200)
    assert resolver.lookups == [HOST]
    assert connections == [("127.0.0.1", receiver.port)]
    (request,) = receiver.requests
    assert request["path"] == "/hooks?from=mengka"
    assert request["headers"]["Host"] == f"{HOST}:{receiver.port}"
    assert b'"pay_x"' in request["body"]


@pytest.mark.parametrize(
    "addresses",
    [
        ["127.0.0.1"],
        ["10.1.2.3"],
        ["172.16.0.1"],
        ["192.168.1.1"],
        ["169.254.169.254"],
        ["100.64.0.1"],
        ["0.0.0.0"],
        ["224.0.0.1"],
        ["240.0.0.1"],
        ["::1"],
        ["fe80::1"],
        ["fc00::1"],
        ["ff02::1"],
        ["::ffff:127.0.0.1"],
        ["2002:7f00:1::1"],  # 6to4 around 127.0.0.1
        ["64:ff9b::a01:203"],  # NAT64 around 10.1.2.3
        [PUBLIC, "10.1.2.3"],  # one private answer is enough
    ],
)
def test_non_public_answers_are_refused(resolver: Resolver, settings: Any, addresses: list[str]) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False
    resolver.answer(HOST, addresses)
    with pytest.raises(services.BlockedHost):
        services.webhook_target(f"https://{HOST}/hooks")


@pytest.mark.parametrize(
    ("url", "answer", "pinned", "host_header"),
    [
        (f"https://{HOST}/hooks", PUBLIC, f"https://{PUBLIC}/hooks", HOST),
        (f"http://{HOST}:8080/h?a=1", PUBLIC, f"http://{PUBLIC}:8080/h?a=1", f"{HOST}:8080"),
        (f"https://{HOST}/h", "2001:4860:4860::8888", "https://[2001:4860:4860::8888]/h", HOST),
        (f"https://{HOST}/h", "::ffff:8.8.8.8", "https://[::ffff:808:808]/h", HOST),
    ],
)
def test_public_answers_are_pinned(
    resolver: Resolver, settings: Any, url: str, answer: str, pinned: str, host_header: str
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False
    resolver.answer(HOST, [answer], ["127.0.0.1"])
    target = services.webhook_target(url)
    assert (target.url, target.host_header) == (pinned, host_header)
    assert target.tls_hostname == (HOST if url.startswith("https") else None)


# --- TLS: the certificate is checked against the endpoint's name, not the address connected to --------------------


CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for HOST only (no IP address in it)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Mengka test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_file, cert_file, key_file


@pytest.fixture
def tls_receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    ca_file, cert_file, key_file = _certificates(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    client_context = ssl.create_default_context(cafile=str(ca_file))
    monkeypatch.setattr("merchants.services.deliveries._tls_context", lambda: client_context)
    server = Receiver(tls=server_context)
    yield server
    server.close()


def test_tls_is_verified_against_the_endpoints_name(
    world: World, tls_receiver: Receiver, resolver: Resolver, connections: list[Any]
) -> None:
    resolver.answer(HOST, ["127.0.0.1"], ["10.255.255.1"])
    delivery = _deliver(world, f"https://{HOST}:{tls_receiver.port}/hooks")
    assert (delivery.status, delivery.response_code, delivery.last_error) == ("succeeded", 200, "")
    assert connections == [("127.0.0.1", tls_receiver.port)]
    assert tls_receiver.server_names == [HOST]  # SNI: the name, not the address
    assert tls_receiver.requests[0]["headers"]["Host"] == f"{HOST}:{tls_receiver.port}"


def test_a_certificate_for_another_name_is_refused(
    world: World, tls_receiver: Receiver, resolver: Resolver, connections: list[Any]
) -> None:
    resolver.answer("other.shop.example", ["127.0.0.1"])
    delivery = _deliver(world, f"https://other.shop.example:{tls_receiver.port}/hooks")
    assert delivery.response_code is None
    assert delivery.last_error.startswith("ConnectError")
    assert "certificate" in delivery.last_error.lower() or "hostname" in delivery.last_error.lower()
    assert tls_receiver.requests == []

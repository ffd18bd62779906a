"""netguard's rule on its own: which URLs and addresses a webhook may reach, and delivery that
connects only where it checked. No DNS: numeric hosts, /etc/hosts, or an injected resolver."""

from __future__ import annotations

import ipaddress
import re
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from meterflow import netguard
from meterflow.workers.alerts import DeliveryFailure, post

PRIVATE = [
    "0.0.0.0",  # noqa: S104  (an address judged, not bound)
    "0.1.2.3",
    "10.0.0.1",
    "10.255.255.255",
    "100.64.0.1",
    "100.127.255.254",
    "127.0.0.1",
    "127.255.255.254",
    "169.254.169.254",  # cloud metadata
    "172.16.0.1",
    "172.31.255.255",
    "192.0.0.9",
    "192.0.2.1",
    "192.88.99.1",
    "192.168.0.1",
    "198.18.0.1",
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "::127.0.0.1",  # IPv4-compatible
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::1",
    "100::1",
    "2001::1",  # Teredo
    "2001:db8::1",
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "3fff::1",
    "5f00::1",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fe80::1%2",
    "fec0::1",
    "ff02::1",
    "ff0e::1",
]
PUBLIC = [
    "1.1.1.1",
    "8.8.8.8",
    "93.184.216.34",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above
    "172.32.0.1",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 (DNS64 networks) of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]


@pytest.mark.parametrize("address", PRIVATE)
def test_addresses_that_are_not_public(address: str) -> None:
    assert not netguard.is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses(address: str) -> None:
    assert netguard.is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("host", "meaning"),
    [
        ("0x7f000001", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0", "0.0.0.0"),  # noqa: S104
        ("0xa9fea9fe", "169.254.169.254"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
        ("[::ffff:7f00:1]", "::ffff:127.0.0.1"),
        ("[::1]", "::1"),
        ("[0:0:0:0:0:0:0:1]", "::1"),
        ("[::]", "::"),
        ("localhost", None),  # /etc/hosts: 127.0.0.1 or ::1
    ],
)
async def test_every_spelling_of_a_private_address_is_refused(host: str, meaning: str) -> None:
    with pytest.raises(netguard.TargetRefused) as refused:
        await netguard.check_target(f"https://{host}/hook", allow_private=False)
    assert refused.value.error_class == "blocked_address"
    assert f"a private address {meaning or ''}" in refused.value.reason


def test_a_dotted_address_with_octal_parts_is_not_a_url() -> None:
    # httpx (the client that sends) refuses it, so it never reaches a resolver that would
    # read it as 127.0.0.1.
    with pytest.raises(netguard.TargetRefused, match="not a valid URL"):
        netguard.parse_target("https://0177.0.0.1/", allow_http=False)


async def test_a_public_literal_needs_no_network() -> None:
    target, addresses = await netguard.check_target(
        "https://93.184.216.34:8443/hook?x=1", allow_private=False
    )
    assert (target.host, target.port, addresses) == ("93.184.216.34", 8443, ["93.184.216.34"])


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://93.184.216.34/", "must be https"),
        ("ftp://93.184.216.34/", "must be https"),
        ("file:///etc/passwd", "must be https"),
        ("gopher://93.184.216.34:70/", "must be https"),
        ("javascript:alert(1)", "must be https"),
        ("//93.184.216.34/", "must be https"),
        ("https://u:p@93.184.216.34/", "user name or password"),
        ("https://u@93.184.216.34/", "user name or password"),
        ("https://a.com\\@127.0.0.1/", "user name or password"),
        ("https:///x", "no host"),
        ("https://93.184.216.34:0/", "out of range"),
        ("https://93.184.216.34:65536/", "out of range"),
        ("https://93.184.216.34/\x00", "control characters"),
        ("https://93.184.216.34/\r\nX-Injected: 1", "control characters"),
        (" https://93.184.216.34/", "control characters or spaces"),
        ("https://93.184.216.34/" + "x" * 2000, "longer than 2000"),
        ("https://[::1/", "not a valid URL"),
        ("https://a..b/", "not a valid name"),
        ("https://.../", "not a valid name"),
        ("https://" + "a" * 64 + ".example.com/", "not a valid name"),
    ],
)
def test_url_forms_that_are_refused(url: str, error: str) -> None:
    with pytest.raises(netguard.TargetRefused) as refused:
        netguard.parse_target(url, allow_http=False)
    assert refused.value.error_class == "invalid_target"
    assert error in refused.value.reason


async def test_the_switch_allows_http_and_any_address_but_not_other_forms() -> None:
    target, addresses = await netguard.check_target("http://127.1:8080/x", allow_private=True)
    assert (target.url.scheme, addresses) == ("http", ["127.0.0.1"])
    for url in ("file:///etc/passwd", "https://u:p@127.0.0.1/", "ftp://127.0.0.1/"):
        with pytest.raises(netguard.TargetRefused):
            await netguard.check_target(url, allow_private=True)


def resolver(*answers: list[str] | Exception) -> tuple[netguard.Resolver, list[str]]:
    """A resolver that gives `answers` in turn (a DNS server that changes its mind)."""
    asked: list[str] = []
    queue = list(answers)

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return resolve, asked


async def test_a_name_is_judged_by_every_address_each_time_it_is_resolved() -> None:
    url = "https://hooks.example.test/x"
    rebinding, asked = resolver(["93.184.216.34"], ["127.0.0.1"])
    await netguard.check_target(url, allow_private=False, resolve=rebinding)  # at creation
    with pytest.raises(netguard.TargetRefused, match=re.escape("private address 127.0.0.1")):
        await netguard.check_target(url, allow_private=False, resolve=rebinding)  # later
    assert asked == ["hooks.example.test", "hooks.example.test"]

    mixed, _ = resolver(["93.184.216.34", "10.0.0.1"])
    with pytest.raises(netguard.TargetRefused, match=re.escape("private address 10.0.0.1")):
        await netguard.check_target(url, allow_private=False, resolve=mixed)


@pytest.mark.parametrize("failure", [OSError(-2, "Name or service not known"), TimeoutError()])
async def test_a_name_that_does_not_resolve_is_a_clear_refusal(failure: Exception) -> None:
    failing, _ = resolver(failure)
    with pytest.raises(netguard.TargetRefused) as refused:
        await netguard.check_target("https://nowhere.test/x", allow_private=False, resolve=failing)
    assert (refused.value.error_class, refused.value.reason) == (
        "dns_error",
        "cannot resolve host nowhere.test",
    )


# ---------------------------------------------------------------- delivery


class Receiver:
    """Records the requests it gets: path, Host header, and the TLS server name asked for."""

    def __init__(self, tls: ssl.SSLContext | None = None, status: int = 204) -> None:
        self.requests: list[tuple[str, str]] = []
        self.server_names: list[str | None] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((self.path, self.headers["Host"]))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        if tls is not None:
            tls.sni_callback = lambda _sock, name, _ctx: receiver.server_names.append(name)
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


async def test_delivery_connects_to_the_checked_address_not_the_name(receiver: Receiver) -> None:
    """`hooks.example.test` does not exist in DNS: the request arrives only because delivery
    connects to the address the check resolved, with the name in the Host header. The first
    address refuses connections; the next checked one is tried."""
    resolve, asked = resolver(["127.0.0.2", "127.0.0.1"])
    url = f"http://hooks.example.test:{receiver.port}/in?x=1"
    status = await post(url, b"{}", {}, allow_private=True, resolve=resolve)
    assert status == 204
    assert receiver.requests == [("/in?x=1", f"hooks.example.test:{receiver.port}")]
    assert asked == ["hooks.example.test"]


async def test_delivery_refuses_a_name_that_now_resolves_to_a_private_address(
    receiver: Receiver,
) -> None:
    resolve, _ = resolver(["127.0.0.1"])
    url = f"https://hooks.example.test:{receiver.port}/in"
    with pytest.raises(DeliveryFailure) as failed:
        await post(url, b"{}", {}, allow_private=False, resolve=resolve)
    assert (failed.value.error_class, failed.value.status, failed.value.permanent) == (
        "blocked_address",
        None,
        False,
    )
    assert receiver.requests == []


async def test_a_target_of_the_wrong_form_fails_for_good() -> None:
    with pytest.raises(DeliveryFailure) as failed:
        await post("http://93.184.216.34/in", b"{}", {}, allow_private=False)
    assert (failed.value.error_class, failed.value.permanent) == ("invalid_target", True)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for hooks.example.test only."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=hooks.example.test",
            "-addext",
            "subjectAltName=DNS:hooks.example.test",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_tls_to_a_pinned_address_still_checks_the_name(
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    receiver = Receiver(tls=server_side)
    trusting = ssl.create_default_context(cafile=str(cert))
    resolve, _ = resolver(["127.0.0.1"])
    try:
        url = f"https://hooks.example.test:{receiver.port}/in"
        status = await post(url, b"{}", {}, allow_private=True, resolve=resolve, verify=trusting)
        assert status == 204
        assert receiver.server_names == ["hooks.example.test"]  # SNI names the host
        assert receiver.requests == [("/in", f"hooks.example.test:{receiver.port}")]

        # A certificate is checked against the URL's name, not against the address.
        other = f"https://other.example.test:{receiver.port}/in"
        with pytest.raises(DeliveryFailure) as failed:
            await post(other, b"{}", {}, allow_private=True, resolve=resolve, verify=trusting)
        assert failed.value.error_class == "tls_error"
        assert len(receiver.requests) == 1
    finally:
        receiver.close()


@pytest.mark.parametrize(
    ("status", "error_class"), [(301, "redirect"), (307, "redirect"), (404, "http_404")]
)
async def test_answers_that_are_failures(status: int, error_class: str) -> None:
    receiver = Receiver(status=status)
    try:
        with pytest.raises(DeliveryFailure) as failed:
            await post(f"http://127.0.0.1:{receiver.port}/in", b"{}", {}, allow_private=True)
        assert (failed.value.error_class, failed.value.status) == (error_class, status)
    finally:
        receiver.close()

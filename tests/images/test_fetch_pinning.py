"""The SSRF pin, attacked: host spellings that a check and libcurl could read differently, and
proof that nothing reaches an address that was not checked, not even one byte.

Two loopback addresses stand in for the world, on the same port: 127.0.0.2 is the allowed
destination (an HTTP server), 127.0.0.1 and ::1 are forbidden (bare listeners that nobody
accepts on, so every connection and byte that reached them can be counted afterwards). DNS is
an in-process fake that never resolves a real name; every test passes its allowlist explicitly
(tests/support/session.py sets TASKAPP_FETCH_ALLOWLIST=127.0.0.1; these tests must not rely on it).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskapp.errors import TaskappError
from taskapp.images import fetch as fetch_module
from taskapp.images.errors import FetchRefused, InvalidURL
from taskapp.images.fetch import Allowlist, Destination, fetch

ALLOWED_IP = "127.0.0.2"
ONLY_ALLOWED = Allowlist.parse([ALLOWED_IP])
BODY = b"GIF89a allowed"


@dataclass
class FakeDNS:
    """Answers every name with ``answer`` and remembers what it was asked."""

    answer: list[str] = field(default_factory=lambda: [ALLOWED_IP])
    asked: list[str] = field(default_factory=list)

    def __call__(self, host: str, port: int, **_: Any) -> list[tuple]:
        self.asked.append(host)
        return [
            (
                socket.AF_INET6 if ":" in ip else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (ip, port),
            )
            for ip in self.answer
        ]


class Forbidden:
    """Listeners on 127.0.0.1 and ::1 that never accept: connections wait in the backlog."""

    def __init__(self, port: int) -> None:
        self.sockets = [_listen(socket.AF_INET, "127.0.0.1", port)]
        with contextlib.suppress(OSError):  # no IPv6 loopback: the IPv4 listener still counts
            self.sockets.append(_listen(socket.AF_INET6, "::1", port))

    def arrived(self) -> tuple[int, bytes]:
        """Connections made and bytes sent to a forbidden address since the last call."""
        connections, data = 0, b""
        for listener in self.sockets:
            while True:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    break
                connections += 1
                with conn:
                    conn.setblocking(False)
                    with contextlib.suppress(BlockingIOError):
                        data += conn.recv(65536)
        return connections, data

    def close(self) -> None:
        for listener in self.sockets:
            listener.close()


def _listen(family: int, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
        sock.listen(64)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class Allowed:
    """What the allowed server (127.0.0.2) was asked: (path, Host header, Authorization)."""

    requests: list[tuple[str, str, str]] = field(default_factory=list, repr=False)


@dataclass
class World:
    port: int
    allowed: Allowed
    forbidden: Forbidden

    def url(self, host: str, path: str = "/img") -> str:
        return f"http://{host}:{self.port}{path}"


def _allowed_server(port: int, seen: Allowed) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            seen.requests.append(
                (self.path, self.headers.get("Host", ""), self.headers.get("Authorization", ""))
            )
            self.send_response(200)
            self.send_header("Content-Type", "image/gif")
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)

    httpd = ThreadingHTTPServer((ALLOWED_IP, port), Handler)
    httpd.daemon_threads = True
    return httpd


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    """One port, three addresses: allowed 127.0.0.2, forbidden 127.0.0.1 and ::1."""
    for _ in range(20):
        probe = _listen(socket.AF_INET, "127.0.0.1", 0)
        port = probe.getsockname()[1]
        probe.close()
        try:
            forbidden = Forbidden(port)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                continue
            raise
        seen = Allowed()
        try:
            httpd = _allowed_server(port, seen)
        except OSError:
            forbidden.close()
            continue
        break
    else:  # pragma: no cover - 20 ports in a row taken
        pytest.fail("no port free on 127.0.0.1, 127.0.0.2 and ::1 together")
    thread = threading.Thread(target=httpd.serve_forever, name="allowed-server", daemon=True)
    thread.start()
    try:
        yield World(port, seen, forbidden)
    finally:
        httpd.shutdown()
        httpd.server_close()
        forbidden.close()


@pytest.fixture
def clean(world: World) -> Iterator[World]:
    """The world, checked after the test: nothing arrived at a forbidden address."""
    world.forbidden.arrived()  # anything left from before is not this test's
    world.allowed.requests.clear()
    yield world
    assert world.forbidden.arrived() == (0, b"")


def get(url: str, dns: FakeDNS | None = None, allowlist: Allowlist = ONLY_ALLOWED) -> bytes:
    return fetch(
        url, max_bytes=10**6, allowlist=allowlist, resolver=dns or FakeDNS(), total_timeout=3
    ).body


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("localhost.", "ends with a dot"),
        ("LocalHost.", "ends with a dot"),
        ("127.0.0.1.", "ends with a dot"),
        ("images.example..", "ends with a dot"),
        ("%6c%6f%63%61%6c%68%6f%73%74", "has a '%'"),
        ("loc%61lhost", "has a '%'"),
        ("[::1%25lo]", "has a '%'"),
        ("[fe80::1%25eth0]", "has a '%'"),
        ("127.0.0.1\\.images.example", "not a valid host name"),
        ("a\u200db.example", "not a valid internationalized domain name"),
        ("1.2.3.999", "not a valid IPv4 address"),
        ("user%00:pw@images.example", "credentials hold control characters"),
    ],
)
def test_a_host_that_could_be_read_two_ways_is_refused_before_dns_or_connect(
    clean: World, host: str, reason: str
) -> None:
    # given DNS that would vouch for any name (it answers the allowed address)
    dns = FakeDNS()
    # when a URL with that host is fetched
    with pytest.raises(InvalidURL, match=reason) as caught:
        get(clean.url(host), dns)
    # then it is a permanent refusal naming the field, decided before any lookup
    assert str(caught.value).startswith("source: refused ")
    assert dns.asked == []
    assert clean.allowed.requests == []


def test_a_redirect_to_a_trailing_dot_host_names_the_location(
    clean: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an allowed page that answers with a redirect to localhost.
    original, calls = fetch_module._perform, []

    def perform(destination: Destination, *args: Any) -> Any:
        calls.append(destination)
        response = original(destination, *args)
        response.status, response.headers = 302, {"location": clean.url("localhost.")}
        return response

    monkeypatch.setattr(fetch_module, "_perform", perform)
    # when it is fetched; then the refusal says the bad host came from the redirect
    with pytest.raises(InvalidURL, match=r"^source \(redirect 1 Location\): refused"):
        get(clean.url(ALLOWED_IP), FakeDNS())
    assert len(calls) == 1


def test_no_byte_leaves_for_an_address_that_was_not_checked(clean: World) -> None:
    # given a hop whose URL names 127.0.0.1 but whose checked address is 127.0.0.2 (what a
    # parser disagreement between our check and libcurl would produce), sent to libcurl as is
    destination = Destination(
        clean.url("127.0.0.1"), "127.0.0.1", clean.port, addresses=(ALLOWED_IP,)
    )
    # when libcurl performs it
    with pytest.raises(FetchRefused, match="not a checked address .* nothing was sent"):
        fetch_module._perform(destination, 10**6, 2.0, 3.0)
    # then the socket was refused before connect: the forbidden listener saw no connection
    assert clean.forbidden.arrived() == (0, b"")


def test_libcurl_connects_to_the_checked_host_whatever_host_it_parsed(clean: World) -> None:
    # given a hop checked as images.invalid -> 127.0.0.2, but a URL naming 127.0.0.1
    destination = Destination(
        clean.url("127.0.0.1", "/pinned"), "images.invalid", clean.port, addresses=(ALLOWED_IP,)
    )
    # when libcurl performs it; then the connection went to the checked, pinned address
    response = fetch_module._perform(destination, 10**6, 2.0, 3.0)
    assert response.status == 200
    assert response.body.getvalue() == BODY
    assert [path for path, _, _ in clean.allowed.requests] == ["/pinned"]


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("2130706433", False),  # 127.0.0.1 as one number
        ("0x7f.1", False),
        ("127.1", False),
        ("0177.0.0.1", False),
        ("0x7f000001", False),
        ("[::ffff:127.0.0.1]", False),
        ("[::ffff:7f00:1]", False),
        ("[0:0:0:0:0:0:0:1]", False),
        ("１２７.０.０.１", False),  # full-width digits: IDNA maps them to 127.0.0.1
        ("0x7f.0.0.2", True),  # the allowed address, spelled oddly, is still the allowed one
        ("2130706434", True),
    ],
)
def test_numeric_spellings_are_read_as_the_address_libcurl_would_connect_to(
    clean: World, host: str, allowed: bool
) -> None:
    dns = FakeDNS()
    if allowed:
        assert get(clean.url(host), dns) == BODY
        assert clean.allowed.requests[0][1] == f"127.0.0.2:{clean.port}"  # canonical Host
    else:
        with pytest.raises(FetchRefused, match=r"127\.0\.0\.1|::1|loopback"):
            get(clean.url(host), dns)
    assert dns.asked == []  # an address literal is never looked up


def test_a_non_ascii_host_is_fetched_under_its_idna_name(clean: World) -> None:
    # given an internationalized name, and a path with non-ASCII characters
    dns = FakeDNS()
    url = clean.url("Bücher.example", "/bild-ä.gif?größe=1")
    # when fetched (pycurl raised UnicodeEncodeError here: a crash)
    assert get(url, dns) == BODY
    # then DNS, the Host header and the request line all used the ASCII forms
    assert dns.asked == ["xn--bcher-kva.example"]
    path, host, _ = clean.allowed.requests[0]
    assert host == f"xn--bcher-kva.example:{clean.port}"
    assert path == "/bild-%C3%A4.gif?gr%C3%B6%C3%9Fe=1"


def test_userinfo_goes_to_libcurl_as_credentials_and_never_picks_the_host(clean: World) -> None:
    dns = FakeDNS()
    # given a URL whose userinfo looks like another host
    url = f"http://127.0.0.1:{clean.port}\\@{ALLOWED_IP}:{clean.port}/cred"
    # then the host is the one after the last @ and the userinfo is sent as Basic credentials
    assert get(url, dns) == BODY
    # (user "127.0.0.1", password "<port>\\": urlsplit splits userinfo at its first colon)
    expected = base64.b64encode(f"127.0.0.1:{clean.port}\\".encode()).decode()
    assert clean.allowed.requests[0] == ("/cred", f"{ALLOWED_IP}:{clean.port}", f"Basic {expected}")
    # and with the roles swapped, the forbidden host is refused
    with pytest.raises(FetchRefused, match="loopback"):
        get(f"http://{ALLOWED_IP}:{clean.port}@127.0.0.1:{clean.port}/x", dns)


def test_dns_answering_a_forbidden_address_for_any_spelling_is_refused(clean: World) -> None:
    # given DNS that answers the allowed address and a forbidden one for the same name
    dns = FakeDNS([ALLOWED_IP, "127.0.0.1"])
    with pytest.raises(FetchRefused, match="127.0.0.1, a loopback address"):
        get(clean.url("images.example"), dns)


# Spellings of a forbidden destination, and of the allowed one, for generated URLs.
FORBIDDEN_SPELLINGS = [
    "localhost",
    "127.0.0.1",
    "127.1",
    "0x7f.0.0.1",
    "2130706433",
    "017700000001",
    "0x7f000001",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[0:0:0:0:0:0:0:1]",
    "ⓛⓞⓒⓐⓛⓗⓞⓢⓣ",
    "１２７.０.０.１",
    "127.0.0.1.nip.io",
]
ALLOWED_SPELLINGS = ["images.example", ALLOWED_IP, "0x7f.0.0.2", "2130706434"]


def _percent_encode(draw: st.DrawFn, host: str) -> str:
    chosen = draw(st.sets(st.integers(0, max(len(host) - 1, 0)), max_size=3))
    return "".join(
        f"%{ord(c):02x}" if i in chosen and c.isascii() and c not in "[]" else c
        for i, c in enumerate(host)
    )


@st.composite
def host_spellings(draw: st.DrawFn) -> str:
    host = draw(st.sampled_from(FORBIDDEN_SPELLINGS + ALLOWED_SPELLINGS))
    if draw(st.booleans()):
        host = "".join(c.upper() if draw(st.booleans()) else c for c in host)
    if draw(st.booleans()):
        host += "." * draw(st.integers(1, 2))
    if draw(st.booleans()):
        host = _percent_encode(draw, host)
    if host.startswith("[") and draw(st.booleans()):
        host = host[:-1] + draw(st.sampled_from(["%25lo", "%25eth0", "%lo", "%2525"])) + "]"
    if draw(st.booleans()):
        other = draw(st.sampled_from(FORBIDDEN_SPELLINGS + ALLOWED_SPELLINGS))
        glue = draw(st.sampled_from(["@", "\\@", ":80@", "%40", "@@", "#@", "?@"]))
        host = other + glue + host if draw(st.booleans()) else host + glue + other
    if draw(st.booleans()):
        host += draw(st.sampled_from(["\\", "\\.images.example", "\t", " ", "/..", ";x"]))
    if draw(st.booleans()):  # userinfo of any bytes, percent-encoded
        junk = draw(st.binary(max_size=6))
        host = "".join(f"%{b:02x}" for b in junk) + draw(st.sampled_from(["@", ":%00@"])) + host
    return host


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    host=host_spellings(),
    answer=st.sampled_from([[ALLOWED_IP], ["127.0.0.1"], [ALLOWED_IP, "::1"], ["::1"]]),
)
def test_no_spelling_reaches_a_forbidden_address(
    world: World, host: str, answer: list[str]
) -> None:
    # given any spelling of a host, and DNS that answers allowed, forbidden or mixed addresses
    world.forbidden.arrived()
    dns = FakeDNS(answer)
    url = f"http://{host}:{world.port}/gen"
    # when it is fetched; then it is served by the allowed address or refused as ours
    with contextlib.suppress(TaskappError):  # any other exception is a crash: the test fails
        assert get(url, dns) == BODY
    # and not a single connection reached 127.0.0.1 or ::1
    assert world.forbidden.arrived() == (0, b""), url


def test_an_allowlisted_unicode_name_matches_its_idna_host(clean: World) -> None:
    # given an allowlist naming a host in Unicode, and DNS answering a loopback address for it
    allowlist = Allowlist.parse(["Bücher.example"])
    dns = FakeDNS([ALLOWED_IP])
    # then the URL's host, however written, is the same allowlisted name
    assert get(clean.url("xn--bcher-kva.example"), dns, allowlist) == BODY
    assert get(clean.url("BÜCHER.example"), dns, allowlist) == BODY


@pytest.mark.integration
@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("http://a\u200db.example/x.jpg", "not a valid internationalized domain name"),
        ("http://bild\u00e4\u200d.example/x.jpg", "not a valid internationalized domain name"),
        ("http://localhost./x.jpg", "ends with a dot"),
        ("http://%6c%6f%63%61%6c%68%6f%73%74/x.jpg", "has a '%'"),
    ],
)
def test_a_task_given_such_a_url_fails_permanently_naming_the_source(
    worker: Any, source: str, reason: str
) -> None:
    from taskapp.images.tasks import make_thumbnails

    # when the thumbnail task gets the URL (refused before any lookup or connection)
    result = make_thumbnails.delay(source)
    error = result.get(timeout=60, interval=0.05, propagate=False)
    # then it failed as a permanent error that says which field and why, not as a crash
    assert result.status == "FAILURE"
    assert isinstance(error, InvalidURL), repr(error)
    assert str(error).startswith("source: refused ")
    assert reason in str(error)

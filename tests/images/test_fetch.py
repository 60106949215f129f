"""URL fetching with pycurl: the SSRF guard, redirects, limits and errors, against 127.0.0.1."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from taskapp.images.errors import FetchRefused, SourceNotFound, SourceTooLarge, SourceUnavailable
from taskapp.images.fetch import Allowlist, check_destination, display_url, fetch
from taskapp.local.net import free_port
from tests.images import samples
from tests.images.conftest import ImageServer

LOCAL = Allowlist.parse(["127.0.0.1"])
NOBODY = Allowlist.parse([])


def resolver_for(mapping: dict[str, list[str]]) -> Any:
    """A stand-in DNS: host -> addresses (what a hostile or rebinding DNS might answer)."""

    def resolve(host: str, port: int, **_: Any) -> list[tuple]:
        if host not in mapping:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in mapping[host]]

    return resolve


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "file://"),
        ("gopher://example.com/_x", "gopher://"),
        ("ftp://example.com/a.jpg", "ftp://"),
        ("http://127.0.0.1/a.jpg", "loopback"),
        ("http://localhost:8080/a.jpg", "loopback"),
        ("http://2130706433/a.jpg", "loopback"),  # 127.0.0.1 as one decimal number
        ("http://10.1.2.3/a.jpg", "private"),
        ("http://192.168.0.10/a.jpg", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::1]/a.jpg", "loopback"),
        ("http://[::ffff:127.0.0.1]/a.jpg", "loopback"),
        ("http://[64:ff9b::a9fe:a9fe]/latest/meta-data/", "link-local"),  # NAT64 of 169.254.169.254
        ("http://[2002:a00:1::1]/a.jpg", "private"),  # 6to4 of 10.0.0.1
        ("http://224.0.0.1/a.jpg", "multicast"),
        ("http://240.0.0.1/a.jpg", "reserved"),
        ("http://0.0.0.0/a.jpg", "unspecified"),
        ("http:///a.jpg", "no host"),
    ],
)
def test_guard_refuses_schemes_and_non_public_destinations(url: str, message: str) -> None:
    # given an empty allowlist; when a URL is checked; then it is refused, saying why
    with pytest.raises(FetchRefused, match=message):
        check_destination(url, NOBODY)


def test_guard_refuses_a_name_resolving_to_any_private_address() -> None:
    # given DNS that answers a public and a private address for one name
    dns = resolver_for({"mixed.example": ["93.184.216.34", "10.0.0.5"]})
    # then the name is refused (libcurl might pick either address)
    with pytest.raises(FetchRefused, match="10.0.0.5, a private address"):
        check_destination("https://mixed.example/a.jpg", NOBODY, dns)


def test_guard_accepts_public_addresses_and_pins_them() -> None:
    dns = resolver_for({"cdn.example": ["93.184.216.34"]})
    destination = check_destination("https://cdn.example/a.jpg", NOBODY, dns)
    assert destination.resolve_option() == ["cdn.example:443:93.184.216.34"]


@pytest.mark.parametrize(
    ("entries", "url", "allowed"),
    [
        (["127.0.0.1"], "http://127.0.0.1:9/a", True),
        (["127.0.0.0/8"], "http://127.0.0.2:9/a", True),
        (["localhost"], "http://localhost:9/a", True),
        (["localhost"], "http://127.0.0.1:9/a", False),  # a host entry does not allow its IP
        (["10.0.0.0/8"], "http://127.0.0.1:9/a", False),
    ],
)
def test_allowlist_matches_hosts_exactly_and_addresses_by_network(
    entries: list[str], url: str, allowed: bool
) -> None:
    allowlist = Allowlist.parse(entries)
    if allowed:
        assert check_destination(url, allowlist).port == 9
    else:
        with pytest.raises(FetchRefused, match="loopback"):
            check_destination(url, allowlist)


def test_fetches_an_allowlisted_local_url(image_server: ImageServer) -> None:
    # given a JPEG served on 127.0.0.1, which the allowlist permits
    body = samples.jpeg(64, 48)
    url = image_server.add("/fetch/ok.jpg", body)
    # when fetched; then the bytes and content type arrive
    fetched = fetch(url, max_bytes=10**6, allowlist=LOCAL)
    assert fetched.body == body
    assert fetched.content_type == "image/jpeg"


def test_connection_goes_to_the_pinned_address_not_a_fresh_lookup(
    image_server: ImageServer,
) -> None:
    # given a name that only our (checked) resolver knows, pointing at the local server
    body = image_server.files.setdefault("/fetch/pinned.jpg", (samples.jpeg(32, 32), "image/jpeg"))
    dns = resolver_for({"images.invalid": ["127.0.0.1"]})
    url = image_server.url("/fetch/pinned.jpg", host="images.invalid")
    # when fetched; then libcurl connected to the pinned address (it cannot resolve the name)
    fetched = fetch(
        url, max_bytes=10**6, allowlist=Allowlist.parse(["images.invalid"]), resolver=dns
    )
    assert fetched.body == body[0]


def test_three_redirects_are_followed_and_a_fourth_is_refused(image_server: ImageServer) -> None:
    body = samples.jpeg(40, 30)
    image_server.add("/fetch/target.jpg", body)
    three = image_server.url("/chain?n=3&to=/fetch/target.jpg")
    four = image_server.url("/chain?n=4&to=/fetch/target.jpg")
    assert fetch(three, max_bytes=10**6, allowlist=LOCAL).body == body
    with pytest.raises(FetchRefused, match="more than 3 redirects"):
        fetch(four, max_bytes=10**6, allowlist=LOCAL)


def test_redirect_to_a_non_allowlisted_address_is_refused(image_server: ImageServer) -> None:
    # given only the host name "localhost" is allowlisted (not the address 127.0.0.1)
    allowlist = Allowlist.parse(["localhost"])
    image_server.add("/fetch/inner.jpg", samples.jpeg(40, 30))
    inner = image_server.url("/fetch/inner.jpg")
    # when a page on localhost redirects to http://127.0.0.1/...
    url = image_server.url(f"/redirect?to={inner}", host="localhost")
    # then the redirect hop is re-validated and refused
    with pytest.raises(FetchRefused, match="127.0.0.1, a loopback address"):
        fetch(url, max_bytes=10**6, allowlist=allowlist)


def test_redirect_to_another_scheme_is_refused(image_server: ImageServer) -> None:
    url = image_server.url("/redirect?to=file:///etc/passwd")
    with pytest.raises(FetchRefused, match="file://"):
        fetch(url, max_bytes=10**6, allowlist=LOCAL)


@pytest.mark.parametrize(
    ("path", "error", "message"),
    [
        ("/fetch/nothing-here.jpg", SourceNotFound, "HTTP 404"),
        ("/error?status=503", SourceUnavailable, "HTTP 503"),
        ("/error?status=429", SourceUnavailable, "HTTP 429"),
        ("/error?status=403", FetchRefused, "HTTP 403"),
    ],
)
def test_http_errors_map_to_permanent_or_retryable(
    image_server: ImageServer, path: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        fetch(image_server.url(path), max_bytes=10**6, allowlist=LOCAL)


def test_byte_limit_aborts_the_download_while_streaming(image_server: ImageServer) -> None:
    # given a server that would stream 64 MB without a Content-Length
    url = image_server.url("/endless?name=cap&total=67108864")
    # when fetched with a 256 KB cap; then the transfer is refused as too large
    with pytest.raises(SourceTooLarge, match="more than 262144 bytes"):
        fetch(url, max_bytes=262144, allowlist=LOCAL)
    # and the server saw the client hang up long before the end
    assert image_server.done.setdefault("cap", __import__("threading").Event()).wait(10)
    assert image_server.streamed["cap"] < 16 * 1024 * 1024


def test_declared_length_over_the_limit_is_refused_up_front(image_server: ImageServer) -> None:
    with pytest.raises(SourceTooLarge):
        fetch(image_server.url("/declared?length=99999999"), max_bytes=10**6, allowlist=LOCAL)


def test_total_timeout_is_retryable(image_server: ImageServer) -> None:
    with pytest.raises(SourceUnavailable, match="timed out"):
        fetch(
            image_server.url("/slow?seconds=2"),
            max_bytes=10**6,
            allowlist=LOCAL,
            total_timeout=0.3,
        )


def test_connection_refused_is_retryable() -> None:
    with pytest.raises(SourceUnavailable, match="network error"):
        fetch(f"http://127.0.0.1:{free_port()}/a.jpg", max_bytes=10**6, allowlist=LOCAL)


def test_unresolvable_host_is_refused() -> None:
    with pytest.raises(FetchRefused, match="does not resolve"):
        check_destination("http://nope.invalid/a.jpg", NOBODY, resolver_for({}))


def test_display_url_drops_credentials_and_query() -> None:
    shown = display_url("https://user:secret@cdn.example:8443/a.jpg?X-Amz-Signature=abc")
    assert shown == "https://cdn.example:8443/a.jpg"

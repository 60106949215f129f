"""Fetch an image over http(s) with pycurl, refusing private destinations (the SSRF guard).

Every hop (the first request and each redirect) is checked the same way: the scheme must be
http or https, the host is resolved here, and every address it resolves to must be public unless
the host or address is in ``TASKAPP_FETCH_ALLOWLIST``. The checked addresses are then pinned with
``CURLOPT_RESOLVE`` so libcurl connects to exactly what was checked: a DNS answer that changes
between our check and libcurl's own lookup (DNS rebinding) cannot redirect the connection.
Redirects are followed here, not by libcurl, so each one is re-validated.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from io import BytesIO
from urllib.parse import urljoin, urlsplit

import pycurl

from taskapp.images.errors import FetchRefused, SourceNotFound, SourceTooLarge, SourceUnavailable

__all__ = ["Fetched", "Destination", "Allowlist", "check_destination", "fetch", "display_url"]

SCHEMES = {"http": 80, "https": 443}
REDIRECTS = {301, 302, 303, 307, 308}
RETRYABLE_STATUS = {408, 425, 429}
USER_AGENT = "taskapp-images/1 (+pycurl)"

#: The well-known NAT64 prefix (RFC 6052); the last 32 bits are the IPv4 destination.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., list[tuple]]


@dataclass(frozen=True)
class Fetched:
    """A downloaded body, its declared content type and the URL it finally came from."""

    body: bytes
    content_type: str | None
    url: str


@dataclass(frozen=True)
class Allowlist:
    """Hosts and networks that may be fetched although they are not public."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allowlist:
        """Entries are host names (matched exactly, without port) or IP addresses/CIDRs."""
        hosts, networks = set(), []
        for entry in (e.strip().lower().rstrip(".") for e in entries):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry)
        return cls(frozenset(hosts), tuple(networks))

    def allows(self, host: str, ip: IPAddress) -> bool:
        return host in self.hosts or any(ip in net for net in self.networks)


@dataclass(frozen=True)
class Destination:
    """A checked hop: the URL's host and port and the addresses libcurl may connect to."""

    url: str
    host: str
    port: int
    addresses: tuple[str, ...] = field(default=())

    @property
    def is_ip_literal(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    def resolve_option(self) -> list[str]:
        """The ``CURLOPT_RESOLVE`` entry pinning this host to the checked addresses."""
        if self.is_ip_literal:
            return []  # libcurl does not resolve an address literal; nothing to pin
        addrs = ",".join(f"[{a}]" if ":" in a else a for a in self.addresses)
        return [f"{self.host}:{self.port}:{addrs}"]


def display_url(url: str) -> str:
    """``url`` without credentials or query string, safe to put in an error message or log."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<malformed URL>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}" if parts.scheme else url[:80]


def _address_kind(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public destination, or None if it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in NAT64:
            # A NAT64 gateway forwards 64:ff9b::a.b.c.d to a.b.c.d, metadata service included.
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return _address_kind(embedded)
    for kind in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if ip.is_global else "non-global"


def _resolve(host: str, port: int, resolver: Resolver) -> list[IPAddress]:
    try:
        infos = resolver(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            raise FetchRefused(f"refused: host {host!r} does not resolve") from None
        raise SourceUnavailable(f"DNS lookup of {host!r} failed: {exc.strerror}") from None
    addresses: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise FetchRefused(f"refused: host {host!r} has no address")
    return addresses


def check_destination(
    url: str, allowlist: Allowlist, resolver: Resolver = socket.getaddrinfo
) -> Destination:
    """Validate one hop; raise ``FetchRefused`` unless every address it reaches is allowed."""
    shown = display_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise FetchRefused(f"refused {shown}: malformed URL") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise FetchRefused(f"refused {scheme or 'scheme-less'}:// URL: only http and https")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise FetchRefused(f"refused {shown}: no host")
    port = port or SCHEMES[scheme]
    addresses = _resolve(host, port, resolver)
    for ip in addresses:
        kind = _address_kind(ip)
        if kind and not allowlist.allows(host, ip):
            raise FetchRefused(
                f"refused {shown}: {host} resolves to {ip}, a {kind} address "
                "(not in TASKAPP_FETCH_ALLOWLIST)"
            )
    return Destination(url, host, port, tuple(str(ip) for ip in addresses))


@dataclass
class _Response:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: BytesIO = field(default_factory=BytesIO)
    received: int = 0
    over_limit: bool = False


def fetch(
    url: str,
    *,
    max_bytes: int,
    allowlist: Allowlist,
    connect_timeout: float = 5.0,
    total_timeout: float = 30.0,
    max_redirects: int = 3,
    resolver: Resolver = socket.getaddrinfo,
) -> Fetched:
    """Download ``url``, following at most ``max_redirects`` re-validated redirects."""
    deadline = time.monotonic() + total_timeout
    redirects = 0
    while True:
        destination = check_destination(url, allowlist, resolver)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SourceUnavailable(f"{display_url(url)}: timed out after {total_timeout:g} s")
        response = _perform(destination, max_bytes, connect_timeout, remaining)
        if response.status not in REDIRECTS:
            return _accept(destination.url, response)
        location = response.headers.get("location")
        if not location:
            raise FetchRefused(f"{display_url(url)}: HTTP {response.status} without Location")
        redirects += 1
        if redirects > max_redirects:
            raise FetchRefused(f"refused {display_url(url)}: more than {max_redirects} redirects")
        url = urljoin(url, location)


def _accept(url: str, response: _Response) -> Fetched:
    status, shown = response.status, display_url(url)
    if status in (404, 410):
        raise SourceNotFound(f"{shown} not found (HTTP {status})")
    if status in RETRYABLE_STATUS or status >= 500:
        raise SourceUnavailable(f"{shown} answered HTTP {status}")
    if not 200 <= status < 300:
        raise FetchRefused(f"{shown} answered HTTP {status}")
    return Fetched(response.body.getvalue(), response.headers.get("content-type"), url)


def _perform(
    destination: Destination, max_bytes: int, connect_timeout: float, timeout: float
) -> _Response:
    response = _Response()

    def on_header(line: bytes) -> None:
        text = line.decode("iso-8859-1").strip()
        if text.startswith("HTTP/"):
            response.headers.clear()  # a new response (after 100 Continue)
        elif ":" in text:
            name, value = text.split(":", 1)
            response.headers[name.strip().lower()] = value.strip()

    def on_body(chunk: bytes) -> int | None:
        response.received += len(chunk)
        if response.received > max_bytes:
            response.over_limit = True
            return 0  # any count other than len(chunk) makes libcurl abort the transfer now
        response.body.write(chunk)
        return None

    curl = pycurl.Curl()
    try:
        _configure(curl, destination, connect_timeout, timeout, max_bytes)
        curl.setopt(pycurl.HEADERFUNCTION, on_header)
        curl.setopt(pycurl.WRITEFUNCTION, on_body)
        curl.perform()
        response.status = int(curl.getinfo(pycurl.RESPONSE_CODE))
        connected = str(curl.getinfo(pycurl.PRIMARY_IP))
    except pycurl.error as exc:
        raise _translate(exc, destination, response, max_bytes) from None
    finally:
        curl.close()
    if connected and ipaddress.ip_address(connected) not in {
        ipaddress.ip_address(a) for a in destination.addresses
    }:
        # Defence in depth: libcurl must have used the pinned addresses.
        raise FetchRefused(f"refused {display_url(destination.url)}: connected to {connected}")
    return response


def _configure(
    curl: pycurl.Curl, destination: Destination, connect_timeout: float, timeout: float, cap: int
) -> None:
    curl.setopt(pycurl.URL, destination.url)
    curl.setopt(pycurl.RESOLVE, destination.resolve_option())
    curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
    curl.setopt(pycurl.FOLLOWLOCATION, 0)
    curl.setopt(pycurl.PROXY, "")  # a proxy from the environment would bypass the pinning
    curl.setopt(pycurl.NOSIGNAL, 1)  # timeouts without SIGALRM: safe in worker threads
    curl.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, int(connect_timeout * 1000)))
    curl.setopt(pycurl.TIMEOUT_MS, max(1, int(timeout * 1000)))
    curl.setopt(pycurl.MAXFILESIZE_LARGE, cap)  # refuses early when Content-Length is too big
    curl.setopt(pycurl.USERAGENT, USER_AGENT)


def _translate(
    exc: pycurl.error, destination: Destination, response: _Response, max_bytes: int
) -> Exception:
    code, message = exc.args[0], exc.args[1] if len(exc.args) > 1 else ""
    shown = display_url(destination.url)
    if response.over_limit or code == pycurl.E_FILESIZE_EXCEEDED:
        return SourceTooLarge(f"{shown}: more than {max_bytes} bytes; download aborted")
    if code in (pycurl.E_UNSUPPORTED_PROTOCOL, pycurl.E_URL_MALFORMAT):
        return FetchRefused(f"refused {shown}: {message}")
    if code == pycurl.E_PEER_FAILED_VERIFICATION:
        return FetchRefused(f"refused {shown}: TLS certificate not trusted ({message})")
    if code == pycurl.E_OPERATION_TIMEDOUT:
        return SourceUnavailable(f"{shown}: timed out ({message})")
    return SourceUnavailable(f"{shown}: network error {code} ({message})")

"""Fetch an image over http(s) with pycurl, refusing private destinations (the SSRF guard).

Every hop (the first request and each redirect) is checked the same way: the scheme must be
http or https, the host is resolved here, and every address it resolves to must be public unless
the host or address is in ``TASKAPP_FETCH_ALLOWLIST``. Redirects are followed here, not by
libcurl, so each one is re-validated.

What is checked is what is connected to, whatever libcurl makes of the URL:

- The host is taken in one canonical spelling or refused. A trailing dot or a ``%`` (curl
  decodes ``%6c%6f...``; an IPv6 zone id) is refused: ``localhost.`` was checked as
  ``localhost`` but, missing the pin, resolved by libcurl itself. Numeric IPv4 forms
  (``2130706433``, ``0x7f.1``, ``127.1``) become the dotted quad, a non-ASCII name its IDNA form,
  and libcurl gets a URL rebuilt from the checked parts (credentials go in options).
- ``CURLOPT_RESOLVE`` pins the checked name to the checked addresses and ``CURLOPT_CONNECT_TO``
  sends every connection to that name, so libcurl never looks a name up (DNS rebinding cannot
  move it).
- ``CURLOPT_OPENSOCKETFUNCTION`` creates a socket only for a checked address and port: anything
  else is refused before a byte leaves. The address libcurl reports afterwards is checked again.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import string
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any
from urllib.parse import SplitResult, quote, unquote, urljoin, urlsplit

import idna  # email-validator's IDNA 2008 / UTS 46 library, so both agree on a domain's A-label
import pycurl
from opentelemetry import trace

from taskapp.images.errors import (
    FetchRefused,
    InvalidURL,
    SourceNotFound,
    SourceTooLarge,
    SourceUnavailable,
)

__all__ = ["Fetched", "Destination", "Allowlist", "check_destination", "fetch", "display_url"]

SCHEMES = {"http": 80, "https": 443}
REDIRECTS = {301, 302, 303, 307, 308}
RETRYABLE_STATUS = {408, 425, 429}
USER_AGENT = "taskapp-images/1 (+pycurl)"
_tracer = trace.get_tracer(__name__)

#: The well-known NAT64 prefix (RFC 6052); the last 32 bits are the IPv4 destination.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., list[tuple[Any, ...]]]

#: A DNS label as hosts are really named (underscores included); 63 characters at most.
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
#: A last label that makes the host an IPv4 address to URL parsers (WHATWG "ends in a number").
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")
#: Path and query characters passed on as they are; anything else is percent-encoded as UTF-8.
_URL_SAFE = "".join(c for c in string.printable if c not in string.whitespace)


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
                hosts.add(_ascii_name(entry))
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
    #: Credentials from the URL's userinfo, passed to libcurl as options, never in the URL.
    username: str | None = None
    password: str | None = None
    #: Where the URL came from, named first in every error about this hop.
    field: str = "source"

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

    def connect_to_option(self) -> list[str]:
        """The ``CURLOPT_CONNECT_TO`` entry sending every connection to the checked host."""
        return [f"::{_bracketed(self.host)}:{self.port}"]

    def allows_peer(self, ip: str, port: int) -> bool:
        """Whether a socket to ``ip``:``port`` goes where this hop was checked to go."""
        try:
            peer = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return port == self.port and peer in {ipaddress.ip_address(a) for a in self.addresses}


def _ascii_name(name: str) -> str:
    """``name`` as hosts are compared: its IDNA A-label form (left as is if it has none)."""
    try:
        return name if name.isascii() else idna.encode(name, uts46=True).decode("ascii")
    except UnicodeError:
        return name


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


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


def _resolve(host: str, port: int, resolver: Resolver, field: str) -> list[IPAddress]:
    try:
        infos = resolver(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            raise FetchRefused(f"{field}: refused: host {host!r} does not resolve") from None
        raise SourceUnavailable(f"{field}: DNS lookup of {host!r} failed: {exc.strerror}") from None
    addresses: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise FetchRefused(f"{field}: refused: host {host!r} has no address")
    return addresses


def check_destination(
    url: str,
    allowlist: Allowlist,
    resolver: Resolver = socket.getaddrinfo,
    field: str = "source",
) -> Destination:
    """Validate one hop; raise ``FetchRefused`` unless every address it reaches is allowed.

    ``field`` names where the URL came from, for the error (the task's ``source``, or a
    redirect's ``Location``).
    """
    shown = display_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise FetchRefused(f"{field}: refused {shown}: malformed URL") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise FetchRefused(
            f"{field}: refused {scheme or 'scheme-less'}:// URL: only http and https"
        )
    host = canonical_host(parts.hostname or "", field, shown)
    if not host:
        raise FetchRefused(f"{field}: refused {shown}: no host")
    port = port or SCHEMES[scheme]
    username, password = _credentials(parts, field, shown)
    try:
        addresses = [ipaddress.ip_address(host)]  # an address literal: nothing to look up
    except ValueError:
        addresses = _resolve(host, port, resolver, field)
    for ip in addresses:
        kind = _address_kind(ip)
        if kind and not allowlist.allows(host, ip):
            raise FetchRefused(
                f"{field}: refused {shown}: {host} resolves to {ip}, a {kind} address "
                "(not in TASKAPP_FETCH_ALLOWLIST)"
            )
    return Destination(
        _rebuilt(parts, scheme, host),
        host,
        port,
        tuple(str(ip) for ip in addresses),
        username,
        password,
        field,
    )


def _credentials(parts: SplitResult, field: str, shown: str) -> tuple[str | None, str | None]:
    """The userinfo, decoded; control characters (NUL, CR, LF) are refused, not sent."""
    decoded = [unquote(v) if v is not None else None for v in (parts.username, parts.password)]
    if any(not v.isprintable() for v in decoded if v):
        raise InvalidURL(f"{field}: refused {shown}: the credentials hold control characters")
    return decoded[0], decoded[1]


def canonical_host(host: str, field: str, shown: str) -> str:
    """``host`` (as ``urlsplit`` gives it: lower case, no brackets) in the one spelling that is
    checked, pinned and connected to; ``InvalidURL`` for a spelling that could mean another."""

    def refuse(reason: str) -> InvalidURL:
        return InvalidURL(f"{field}: refused {shown}: host {host!r} {reason}")

    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except UnicodeError as exc:  # idna.IDNAError is one
            raise refuse(f"is not a valid internationalized domain name ({exc})") from None
    if "%" in host:
        raise refuse("has a '%': percent-encoding and IPv6 zone ids are not accepted")
    if host.endswith("."):
        raise refuse("ends with a dot: give the name without it")
    if ":" in host:  # only an IPv6 literal gets here with a colon (urlsplit split the port off)
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise refuse("is not a valid IPv6 address") from None
    labels = host.split(".")
    if host and _NUMERIC_LABEL.match(labels[-1]):
        # URL parsers (and libcurl) read 2130706433, 0x7f.1 and 127.1 as 127.0.0.1.
        try:
            return str(ipaddress.IPv4Address(socket.inet_aton(host)))
        except OSError:
            raise refuse("ends in a number but is not a valid IPv4 address") from None
    if host and (len(host) > 253 or not all(_LABEL.match(label) for label in labels)):
        raise refuse("is not a valid host name")
    return host


def _rebuilt(parts: SplitResult, scheme: str, host: str) -> str:
    """The URL libcurl gets: the checked host, no credentials or fragment, non-ASCII encoded."""
    port = f":{parts.port}" if parts.port else ""
    path = quote(parts.path or "/", safe=_URL_SAFE)
    query = f"?{quote(parts.query, safe=_URL_SAFE)}" if parts.query else ""
    return f"{scheme}://{_bracketed(host)}{port}{path}{query}"


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
        where = f"source (redirect {redirects} Location)" if redirects else "source"
        destination = check_destination(url, allowlist, resolver, where)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SourceUnavailable(
                f"{where}: {display_url(url)}: timed out after {total_timeout:g} s"
            )
        # pycurl has no OpenTelemetry instrumentation: one span per request (a no-op untraced).
        with _tracer.start_as_current_span("GET", kind=trace.SpanKind.CLIENT) as span:
            span.set_attribute("url.full", display_url(url))
            response = _perform(destination, max_bytes, connect_timeout, remaining)
            span.set_attribute("http.response.status_code", response.status)
        if response.status not in REDIRECTS:
            return _accept(destination, response)
        location = response.headers.get("location")
        if not location:
            raise FetchRefused(
                f"{where}: {display_url(url)}: HTTP {response.status} without Location"
            )
        redirects += 1
        if redirects > max_redirects:
            raise FetchRefused(
                f"{where}: refused {display_url(url)}: more than {max_redirects} redirects"
            )
        url = urljoin(url, location)


def _accept(destination: Destination, response: _Response) -> Fetched:
    status, shown = response.status, f"{destination.field}: {display_url(destination.url)}"
    if status in (404, 410):
        raise SourceNotFound(f"{shown} not found (HTTP {status})")
    if status in RETRYABLE_STATUS or status >= 500:
        raise SourceUnavailable(f"{shown} answered HTTP {status}")
    if not 200 <= status < 300:
        raise FetchRefused(f"{shown} answered HTTP {status}")
    return Fetched(response.body.getvalue(), response.headers.get("content-type"), destination.url)


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

    refused: list[str] = []
    curl = pycurl.Curl()
    try:
        _configure(curl, destination, connect_timeout, timeout, max_bytes)
        curl.setopt(pycurl.OPENSOCKETFUNCTION, _socket_opener(destination, refused))
        curl.setopt(pycurl.HEADERFUNCTION, on_header)
        curl.setopt(pycurl.WRITEFUNCTION, on_body)
        curl.perform()
        response.status = int(curl.getinfo(pycurl.RESPONSE_CODE))
        connected = str(curl.getinfo(pycurl.PRIMARY_IP))
    except pycurl.error as exc:
        if refused:
            raise FetchRefused(
                f"{destination.field}: refused {display_url(destination.url)}: "
                f"libcurl was about to connect to "
                f"{refused[0]}, not a checked address ({', '.join(destination.addresses)}); "
                "nothing was sent"
            ) from None
        raise _translate(exc, destination, response, max_bytes) from None
    finally:
        curl.close()
    if connected and ipaddress.ip_address(connected) not in {
        ipaddress.ip_address(a) for a in destination.addresses
    }:
        # Defence in depth: libcurl must have used the pinned addresses.
        raise FetchRefused(
            f"{destination.field}: refused {display_url(destination.url)}: connected to {connected}"
        )
    return response


def _socket_opener(destination: Destination, refused: list[str]) -> Callable[[int, Any], Any]:
    """libcurl's socket(2): a socket only for a checked address and port, else CURL_SOCKET_BAD.

    Called for every connection attempt (each address, happy eyeballs included) before any
    connect; an exception here would be lost inside libcurl, so nothing in it raises.
    """

    def open_socket(purpose: int, address: Any) -> Any:
        peer = address.addr if address.family in (socket.AF_INET, socket.AF_INET6) else None
        if purpose != pycurl.SOCKTYPE_IPCXN or not peer or not destination.allows_peer(*peer[:2]):
            refused.append(f"{peer[0]}:{peer[1]}" if peer else f"address family {address.family}")
            return pycurl.SOCKET_BAD
        try:  # libcurl keeps a dup() of the descriptor; this object may be collected
            return socket.socket(address.family, address.socktype, address.protocol)
        except OSError:
            return pycurl.SOCKET_BAD  # out of descriptors: libcurl reports a connect error

    return open_socket


def _configure(
    curl: pycurl.Curl, destination: Destination, connect_timeout: float, timeout: float, cap: int
) -> None:
    curl.setopt(pycurl.URL, destination.url)
    curl.setopt(pycurl.RESOLVE, destination.resolve_option())
    curl.setopt(pycurl.CONNECT_TO, destination.connect_to_option())
    if destination.username is not None:  # as UTF-8 bytes: pycurl encodes a str as ASCII only
        curl.setopt(pycurl.USERNAME, destination.username.encode())
        curl.setopt(pycurl.PASSWORD, (destination.password or "").encode())
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
    shown = f"{destination.field}: {display_url(destination.url)}"
    if response.over_limit or code == pycurl.E_FILESIZE_EXCEEDED:
        return SourceTooLarge(f"{shown}: more than {max_bytes} bytes; download aborted")
    if code in (pycurl.E_UNSUPPORTED_PROTOCOL, pycurl.E_URL_MALFORMAT):
        return FetchRefused(f"{shown}: refused: {message}")
    if code == pycurl.E_PEER_FAILED_VERIFICATION:
        return FetchRefused(f"{shown}: refused: TLS certificate not trusted ({message})")
    if code == pycurl.E_OPERATION_TIMEDOUT:
        return SourceUnavailable(f"{shown}: timed out ({message})")
    return SourceUnavailable(f"{shown}: network error {code} ({message})")

"""The fault proxy does what each mode says, against a loopback echo server."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.faultproxy import FaultProxy, Mode


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        # The reset mode's whole point is that the proxy resets this side too: the echo ends
        # quietly instead of printing socketserver's traceback into the test output.
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
        except ConnectionResetError:
            return


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with FaultProxy(server.server_address) as proxy:  # type: ignore[arg-type]
        yield proxy
    server.shutdown()
    server.server_close()


def _connect(proxy: FaultProxy, timeout: float = 5) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)


def _echo(sock: socket.socket, data: bytes = b"ping") -> bytes:
    sock.sendall(data)
    return sock.recv(65536)


def _answers(sock: socket.socket) -> bool:
    """Whether two echoes come back (the first send may be buffered before an RST is seen)."""
    try:
        return _echo(sock) == b"ping" and _echo(sock) == b"ping"
    except OSError:
        return False


def test_pass_forwards(proxy: FaultProxy) -> None:
    with _connect(proxy) as sock:
        assert _echo(sock) == b"ping"


def test_latency_holds_each_answer(proxy: FaultProxy) -> None:
    proxy.set(Mode.LATENCY, latency_ms=200)
    with _connect(proxy) as sock:
        started = time.monotonic()
        assert _echo(sock) == b"ping"
        assert time.monotonic() - started >= 0.2  # a lower bound, never flaky


def test_reset_cuts_open_and_new_connections(proxy: FaultProxy) -> None:
    sock = _connect(proxy)
    assert _echo(sock) == b"ping"
    proxy.set(Mode.RESET)
    with sock:
        assert not _answers(sock)
    try:
        new = _connect(proxy)
    except ConnectionResetError:
        pass  # reset before connect() returned: it answered nothing either
    else:
        with new:
            assert not _answers(new)
    proxy.set(Mode.PASS)
    with _connect(proxy) as sock:
        assert _echo(sock) == b"ping"


def test_blackhole_accepts_answers_nothing_then_delivers(proxy: FaultProxy) -> None:
    proxy.set(Mode.BLACKHOLE)
    with _connect(proxy, timeout=0.5) as sock:
        sock.sendall(b"held")
        with pytest.raises(socket.timeout):
            sock.recv(65536)
        proxy.set(Mode.PASS)
        sock.settimeout(5)
        assert sock.recv(65536) == b"held"


def test_refuse_refuses_until_switched_back(proxy: FaultProxy) -> None:
    port = proxy.port
    proxy.set(Mode.REFUSE)
    with pytest.raises(ConnectionRefusedError):
        _connect(proxy)
    proxy.set(Mode.PASS)
    assert proxy.port == port
    with _connect(proxy) as sock:
        assert _echo(sock) == b"ping"

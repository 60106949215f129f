"""A loopback TCP proxy whose faults a test switches at run time (test support, not product code).

``FaultProxy(("127.0.0.1", port)).start()`` listens on a free 127.0.0.1 port and forwards each
connection to the target. :meth:`FaultProxy.set` switches the mode for every connection, open
or new:

* ``PASS``: forward as is.
* ``LATENCY``: forward, holding each chunk coming back from the target ``latency_ms`` first
  (so every request/response call is that much slower).
* ``RESET``: open connections are reset (RST) and new ones are accepted and reset at once.
* ``BLACKHOLE``: connections are accepted and nothing moves either way; what was sent waits
  (as TCP retransmits would) and moves on once the mode changes, unless it is ``RESET``.
* ``REFUSE``: nothing listens, so new connections are refused (ECONNREFUSED); open ones stay.

Threads: one accepting, two per connection. :meth:`stop` (or the context manager) ends all.
"""

from __future__ import annotations

import contextlib
import enum
import socket
import struct
import threading
import time
from types import TracebackType

__all__ = ["FaultProxy", "Mode"]


class Mode(enum.Enum):
    """What the proxy does to traffic."""

    PASS = "pass"
    LATENCY = "latency"
    RESET = "reset"
    BLACKHOLE = "blackhole"
    REFUSE = "refuse"


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with an RST instead of a FIN.

    ``shutdown(SHUT_RD)`` first: a pump thread blocked in ``recv`` on this socket keeps it alive
    through ``close()`` (the kernel releases it, and sends the RST, only when that call returns),
    so without it a reset connection could stay open and silent, and the client behind it hang
    on a reply that never comes (a worker's COMMIT waited for its soft time limit).
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RD)  # wakes a thread blocked in recv on it
        sock.close()
    except OSError:
        pass


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of ``target``, with faults switchable at run time."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.mode = Mode.PASS
        self.latency = 0.0
        self.connections = 0  # accepted so far, for tests and diagnostics
        self._cond = threading.Condition()
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self._open: set[socket.socket] = set()
        self._stopped = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._listen()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
            open_, self._open = set(self._open), set()
        self._close_listener()
        for sock in open_:
            _reset(sock)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- switching -----------------------------------------------------------------------------
    def set(self, mode: Mode, latency_ms: float = 0) -> None:
        """Switch every connection, open and new, to ``mode``."""
        with self._cond:
            previous, self.mode, self.latency = self.mode, mode, latency_ms / 1000
            self._cond.notify_all()
            doomed = set(self._open) if mode is Mode.RESET else set()
        for sock in doomed:
            _reset(sock)
        if mode is Mode.REFUSE and previous is not Mode.REFUSE:
            self._close_listener()
        elif previous is Mode.REFUSE and mode is not Mode.REFUSE:
            self._listen()

    # -- internals -----------------------------------------------------------------------------
    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 5
        while True:  # rebinding the same port after REFUSE may meet a moment's EADDRINUSE
            try:
                listener.bind(("127.0.0.1", self.port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._accepting = threading.Thread(
            target=self._accept, args=(listener,), name="faultproxy-accept", daemon=True
        )
        self._accepting.start()

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            listener.close()
        if self._accepting is not None and self._accepting is not threading.current_thread():
            self._accepting.join(5)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # listener closed (REFUSE or stop)
            with self._cond:
                self.connections += 1
                if self._stopped or self.mode is Mode.RESET:
                    _reset(client)
                    continue
                self._open.add(client)
            threading.Thread(
                target=self._connect, args=(client,), name="faultproxy-conn", daemon=True
            ).start()

    def _wait_while_blackholed(self) -> bool:
        """Wait until traffic may move; False if the connection must end instead."""
        with self._cond:
            while self.mode is Mode.BLACKHOLE and not self._stopped:
                self._cond.wait(0.5)
            return not self._stopped and self.mode is not Mode.RESET

    def _connect(self, client: socket.socket) -> None:
        if not self._wait_while_blackholed():
            self._drop(client)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            self._drop(client)
            return
        upstream.settimeout(None)
        with self._cond:
            self._open.add(upstream)
        threading.Thread(
            target=self._pump, args=(client, upstream, False), name="faultproxy-up", daemon=True
        ).start()
        self._pump(upstream, client, True)

    def _pump(self, src: socket.socket, dst: socket.socket, delayed: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not self._wait_while_blackholed():
                    break
                if delayed and self.mode is Mode.LATENCY and self.latency:
                    time.sleep(self.latency)
                dst.sendall(data)
        except OSError:
            pass
        self._drop(src)
        self._drop(dst)

    def _drop(self, sock: socket.socket) -> None:
        with self._cond:
            self._open.discard(sock)
            reset = self.mode is Mode.RESET
        if reset:
            _reset(sock)
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

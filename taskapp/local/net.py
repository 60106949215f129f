"""Loopback ports for the local stack."""

from __future__ import annotations

import socket
from collections.abc import Callable

__all__ = ["LOOPBACK", "free_port", "wait_for_port"]

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int, timeout: float = 10.0, alive: Callable[[], bool] | None = None
) -> None:
    """Block until something accepts connections on 127.0.0.1:``port``.

    ``alive`` says whether the process that should listen still runs: once it says no, waiting
    stops at once with a ``RuntimeError``.
    """
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            if alive is not None and not alive():
                raise RuntimeError(f"the process for {LOOPBACK}:{port} exited") from None
            if time.monotonic() > deadline:
                message = f"nothing listens on {LOOPBACK}:{port} after {timeout}s"
                raise TimeoutError(message) from None
            time.sleep(0.05)

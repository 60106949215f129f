"""Image test fixtures: a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from taskapp.local.net import LOOPBACK


@dataclass
class ImageServer:
    """A tiny HTTP server: ``files`` by path, plus redirect, error, slow and endless routes."""

    port: int = 0
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    streamed: dict[str, int] = field(default_factory=dict)
    done: dict[str, threading.Event] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)

    def url(self, path: str, host: str = LOOPBACK) -> str:
        return f"http://{host}:{self.port}{path}"

    def add(self, path: str, body: bytes, content_type: str = "image/jpeg") -> str:
        self.files[path] = (body, content_type)
        return self.url(path)


def _handler(server: ImageServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            route = getattr(self, "route_" + parts.path.strip("/").split("/")[0], None)
            if route is not None:
                route(query)
            elif parts.path in server.files:
                body, content_type = server.files[parts.path]
                self._send(200, body, content_type)
            else:
                self._send(404, b"not found", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def route_redirect(self, query: dict[str, str]) -> None:
            self._send(302, b"", "text/plain", Location=query["to"])

        def route_chain(self, query: dict[str, str]) -> None:
            hops = int(query["n"])
            target = query["to"] if hops <= 1 else f"/chain?n={hops - 1}&to={query['to']}"
            self._send(302, b"", "text/plain", Location=target)

        def route_error(self, query: dict[str, str]) -> None:
            self._send(int(query.get("status", "503")), b"oops", "text/plain")

        def route_flaky(self, query: dict[str, str]) -> None:
            """Answer 503 to the first ``fail`` requests for ``path``, then serve it."""
            path = query["path"]
            server.hits[path] = server.hits.get(path, 0) + 1
            if server.hits[path] <= int(query["fail"]):
                self._send(503, b"try again", "text/plain")
            else:
                self._send(200, *server.files[path])

        def route_slow(self, query: dict[str, str]) -> None:
            time.sleep(float(query.get("seconds", "3")))
            self._send(200, b"late", "text/plain")

        def route_declared(self, query: dict[str, str]) -> None:
            self.send_response(200)
            self.send_header("Content-Length", query["length"])
            self.end_headers()
            self.wfile.write(b"x" * 1024)

        def route_endless(self, query: dict[str, str]) -> None:
            """Stream up to ``total`` bytes without Content-Length, counting what was sent."""
            name, total, sent = query["name"], int(query["total"]), 0
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            chunk = b"\xff" * 65536
            try:
                while sent < total:
                    self.wfile.write(chunk)
                    sent += len(chunk)
            except OSError:
                pass  # the client hung up: exactly what the byte cap should do
            finally:
                server.streamed[name] = sent
                server.done.setdefault(name, threading.Event()).set()
                self.close_connection = True

    return Handler


@pytest.fixture(scope="session")
def image_server() -> Iterator[ImageServer]:
    """A threaded HTTP server on 127.0.0.1 for URL sources, for the whole session."""
    state = ImageServer()
    httpd = ThreadingHTTPServer((LOOPBACK, 0), _handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, name="image-server", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()

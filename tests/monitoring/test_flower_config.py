"""``taskapp.flower_setup``: defaults after Flower's own parsing, and the guard on bound sockets.

Options are parsed by tornado's real parser (a fresh one with Flower's definitions, so the
process-wide options stay untouched); the guard judges real sockets bound by tornado's
``bind_sockets``, as Flower binds them. Flower itself, started as users start it, is in
``test_flower_guard.py``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tornado.netutil import bind_sockets
from tornado.options import OptionParser

from config.flowerconfig import DEFAULTS
from taskapp.flower_setup import apply_defaults, authenticated, refuse_unauthenticated

FIXTURE_OK = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(autouse=True)
def no_auth_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKAPP_FLOWER_BASIC_AUTH", raising=False)


def parsed(*argv: str) -> Any:
    """A fresh parser with Flower's options, after ``argv`` as Flower parses it."""
    from flower.options import default_options

    parser = OptionParser()
    for name, option in default_options._options.items():
        if name != "help":
            parser.define(
                option.name, default=option.default, type=option.type, multiple=option.multiple
            )
    parser.parse_command_line(["flower", *argv], final=False)
    return parser


ADDRESS = st.sampled_from(["", "0.0.0.0", "127.0.0.1", "::", "localhost"])
SPELLING = st.tuples(st.sampled_from(["-address=", "--address="]), ADDRESS)


@FIXTURE_OK
@given(
    addresses=st.lists(SPELLING, max_size=3),
    timeout=st.none() | st.sampled_from(["500", "1000"]),
)
def test_defaults_fill_only_options_nobody_set(
    no_auth_in_env: None, addresses: list[tuple[str, str]], timeout: str | None
) -> None:
    # given any spelling of --address, repeated or absent, and maybe an inspect timeout
    argv = [flag + value for flag, value in addresses]
    argv += [f"--inspect_timeout={timeout}"] if timeout else []
    options = parsed(*argv)
    # when the project's defaults are applied
    apply_defaults(options)
    # then Flower's own parse decides what was given (last wins, "" stays ""), defaults the rest
    assert options.address == (addresses[-1][1] if addresses else DEFAULTS["address"])
    assert options.inspect_timeout == (float(timeout) if timeout else DEFAULTS["inspect_timeout"])
    assert options.enable_events is False
    assert options.purge_offline_workers == 300


def test_basic_auth_comes_from_settings_unless_flower_was_given_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKAPP_FLOWER_BASIC_AUTH", "ops:s3cret")
    from_settings = parsed()
    apply_defaults(from_settings)
    flowers_own = parsed("--basic_auth=admin:other")
    apply_defaults(flowers_own)
    assert from_settings.basic_auth == ["ops:s3cret"]
    assert authenticated(from_settings)
    assert flowers_own.basic_auth == ["admin:other"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], False),
        (["--basic_auth=ops:s3cret"], True),
        (["--basic_auth=ops:s3cret,viewer:pw"], True),
        (["--auth=.*@example\\.com"], True),
        (["--basic_auth=ops:"], False),  # anyone who knows the user name gets in
        (["--basic_auth=:pw"], False),
        (["--basic_auth=ops:s3cret,ops:"], False),
    ],
)
def test_authenticated_means_every_credential_has_a_password(
    argv: list[str], expected: bool
) -> None:
    assert authenticated(parsed(*argv)) is expected


EXPOSED = {"0.0.0.0", "::"}
HOST = st.sampled_from(["0.0.0.0", "::", "::1", "localhost"]) | st.ip_addresses(
    network="127.0.0.0/8"
).map(str)
AUTH = st.sampled_from([[], ["--basic_auth=ops:s3cret"], ["--basic_auth=ops:"], ["--auth=.*"]])


@pytest.fixture
def bound() -> Iterator[list[socket.socket]]:
    sockets: list[socket.socket] = []
    yield sockets
    for sock in sockets:
        sock.close()


@FIXTURE_OK
@given(host=HOST, auth=AUTH)
def test_the_guard_refuses_exposed_sockets_without_auth(
    bound: list[socket.socket], host: str, auth: list[str]
) -> None:
    # given sockets bound as Flower binds them (port 0: any free port)
    sockets = bind_sockets(0, address=host)
    bound.extend(sockets)
    options = parsed(*auth)
    # when the guard judges them
    try:
        refuse_unauthenticated(sockets, options)
        refused = None
    except SystemExit as exc:
        refused = str(exc.code)
    # then it refuses exactly an address outside loopback without a real credential
    should_refuse = host in EXPOSED and auth in ([], ["--basic_auth=ops:"])
    assert (refused is not None) is should_refuse, (host, auth, refused)
    if refused:
        assert "Flower refuses to listen" in refused
        assert "\n" not in refused
        assert all(sock.fileno() == -1 for sock in sockets)
    else:
        assert all(sock.fileno() != -1 for sock in sockets)


def test_flower_is_hooked_whichever_of_taskapp_and_flower_came_first() -> None:
    # given this process imported taskapp (tests/conftest.py) before or after flower.app
    from flower.app import Flower

    import taskapp  # noqa: F401

    # then Flower's app is wrapped exactly once
    assert getattr(Flower, "taskapp_hooked", False)
    assert not hasattr(Flower.__init__.__wrapped__, "__wrapped__")
    assert not hasattr(Flower.start_http_server.__wrapped__, "__wrapped__")


def test_flowers_worker_buttons_wait_for_the_reply_as_long_as_its_inspect() -> None:
    from celery import Celery

    from taskapp.flower_setup import wait_like_inspect

    # given an app whose control broadcasts are recorded (as Flower's capp)
    capp = Celery("buttons", broker="memory://", set_as_current=False)
    timeouts: list[float] = []
    capp.control.broadcast = lambda command, *args, **kwargs: timeouts.append(kwargs["timeout"])
    # when Flower is set up with its 3 s inspect timeout and a button sends a command
    wait_like_inspect(capp, 3.0)
    capp.control.pool_shrink(n=1, reply=True, destination=["w@host"])
    capp.control.rate_limit("tests.add", "20/m", reply=True, destination=["w@host"])
    # then each waits 3 s for the worker's reply (Celery's default is 1 s); a given one stands
    capp.control.broadcast("ping", reply=True, timeout=0.5)
    assert timeouts == [3.0, 3.0, 0.5]

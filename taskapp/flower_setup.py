"""The project's Flower set-up, in every Flower process that runs with ``-A taskapp``.

Why: Flower reads ``flowerconfig.py`` from the *current directory* by default, so
``celery -A taskapp flower`` (how Celery users start it) loaded none of ``config/flowerconfig.py``:
no auth guard, no SQS Broker page, Flower's own default address ``""`` (every interface). A guard
inside the config file could only guess the address from ``sys.argv``, and Flower's option
parser accepts spellings such a guess misses (``-address=0.0.0.0``, ``--address=``, a repeated
``--address``).

What: :func:`hook_flower`, called when ``taskapp`` is imported, wraps two methods of
``flower.app.Flower``. The celery CLI loads its ``celery.commands`` plugins, Flower's among them,
before ``-A`` imports the app, so ``flower.app`` is already imported in a Flower process; where
``taskapp`` comes first, a one-shot import hook wraps ``flower.app`` when it is imported.

- ``Flower.__init__`` runs after Flower has parsed its command line, ``FLOWER_*`` environment
  and ``--conf`` file. Options none of them set get ``config/flowerconfig.py``'s ``DEFAULTS`` and
  ``TASKAPP_FLOWER_BASIC_AUTH``; the SQS broker and Broker page are registered.
- ``Flower.start_http_server`` binds the sockets; before anything is served, the guard judges
  each bound socket's address. Any non-loopback socket without authentication closes them all
  and exits with one line and status 1.

Cost: two attribute assignments at import (or one finder, which ``flower.app``'s import
removes). Worker and beat processes (which also load Flower's
command through the celery CLI) never construct ``Flower``, so nothing else runs there.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import ipaddress
import logging
import socket
import sys
from typing import Any

__all__ = [
    "PLACEHOLDER_PASSWORD",
    "apply_defaults",
    "authenticated",
    "hook_flower",
    "refuse_unauthenticated",
    "warn_placeholder_password",
]

logger = logging.getLogger(__name__)
#: The password of docker-compose.yml's default TASKAPP_FLOWER_BASIC_AUTH (and .env.example's).
PLACEHOLDER_PASSWORD = "change-me"

REFUSAL = (
    "taskapp: Flower refuses to listen on {where} without authentication: set "
    "TASKAPP_FLOWER_BASIC_AUTH=user:password (or Flower's --basic-auth/--auth), "
    "or bind loopback with --address=127.0.0.1"
)


def hook_flower() -> None:
    """Wrap ``flower.app.Flower`` now, or as soon as it is imported (idempotent)."""
    flower_app = sys.modules.get("flower.app")
    if flower_app is None:
        if not any(isinstance(f, _FlowerAppFinder) for f in sys.meta_path):
            sys.meta_path.insert(0, _FlowerAppFinder())
        return
    if getattr(flower_app.Flower, "taskapp_hooked", False):
        return
    cls = flower_app.Flower
    cls.__init__ = _with_setup(cls.__init__)
    cls.start_http_server = _with_guard(cls.start_http_server, flower_app)
    cls.taskapp_hooked = True


class _FlowerAppFinder(importlib.abc.MetaPathFinder):
    """Hooks ``flower.app`` right after it is imported, when ``taskapp`` was imported first."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "flower.app":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_hook(module: Any) -> None:
            exec_module(module)
            hook_flower()

        spec.loader.exec_module = exec_and_hook  # type: ignore[method-assign]
        return spec


def _with_setup(init: Any) -> Any:
    @functools.wraps(init)
    def __init__(self: Any, options: Any = None, *args: Any, **kwargs: Any) -> None:
        import flower.urls
        from flower.options import default_options

        from taskapp.preflight import check_flower
        from taskapp.queues import queue_names
        from taskapp.sqs.admin.flower_broker import install

        apply_defaults(default_options if options is None else options)
        check_flower()  # a schema at the Alembic heads, else exit 2 (taskapp/preflight.py)
        warn_placeholder_password(default_options if options is None else options)
        install(known_queues=queue_names)
        protect_metrics()
        # Flower passes a copy of flower.urls.settings, taken before this call.
        kwargs.setdefault("template_loader", flower.urls.settings["template_loader"])
        init(self, options, *args, **kwargs)
        wait_like_inspect(self.capp, float(self.options.inspect_timeout) / 1000)

    return __init__


def wait_like_inspect(capp: Any, seconds: float) -> None:
    """Flower's worker buttons (pool grow/shrink, rate and time limits, shutdown, ...) wait for
    the worker's reply as long as its inspect calls do (``inspect_timeout``).

    They call Celery's control commands without a timeout, so each waited Celery's default 1 s:
    a reply over SNS and SQS that came later (a loaded worker) made Flower answer 403 "Unknown
    reason" for a command the worker carried out.
    """
    broadcast = capp.control.broadcast

    @functools.wraps(broadcast)
    def patient(command: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        return broadcast(command, *args, timeout=seconds if timeout is None else timeout, **kwargs)

    capp.control.broadcast = patient


def _with_guard(start_http_server: Any, flower_app: Any) -> Any:
    @functools.wraps(start_http_server)
    def guarded(self: Any) -> Any:
        bind_sockets = flower_app.bind_sockets

        def bind_and_judge(*args: Any, **kwargs: Any) -> list[socket.socket]:
            sockets = bind_sockets(*args, **kwargs)
            refuse_unauthenticated(sockets, self.options)
            return list(sockets)

        # Flower's own start_http_server binds, so its address, port and socket options stay
        # Flower's; only the bind it calls is ours, for this one call.
        flower_app.bind_sockets = bind_and_judge
        try:
            return start_http_server(self)
        finally:
            flower_app.bind_sockets = bind_sockets

    return guarded


def _given(options: Any, name: str) -> bool:
    # tornado keeps an option's value UNSET until the command line, environment or file sets it.
    from tornado.options import _Option

    return options._options[name.replace("_", "-")]._value is not _Option.UNSET


def apply_defaults(options: Any) -> None:
    """Give each option nobody set the project's default (``config/flowerconfig.py``)."""
    from config.flowerconfig import DEFAULTS
    from config.settings import SettingError, load_settings

    defaults = dict(DEFAULTS)
    try:
        credentials = load_settings().flower_basic_auth
    except SettingError as exc:
        # The same one line and status as the CLI, worker and beat give for a bad setting.
        print(f"taskapp: configuration error: {exc}", file=sys.stderr)  # noqa: T201 - one line
        raise SystemExit(2) from None
    if credentials:
        defaults["basic_auth"] = [credentials.get_secret_value()]
    for name, value in defaults.items():
        if not _given(options, name):
            setattr(options, name, value)


def protect_metrics() -> None:
    """Ask ``/metrics`` for the same credentials as every other page.

    Flower serves its Prometheus metrics without authentication even when auth is on, so
    worker names, task names and counts would be readable by anyone who reaches the port.
    Prometheus scrapes with ``basic_auth`` in its scrape config. ``/healthcheck`` stays open.
    """
    from flower.views.monitor import Metrics
    from tornado.web import authenticated as login_required

    if not getattr(Metrics.get, "taskapp_protected", False):
        protected = login_required(Metrics.get)
        protected.taskapp_protected = True  # type: ignore[attr-defined]
        Metrics.get = protected


def authenticated(options: Any) -> bool:
    """Whether Flower asks every page for credentials: OAuth, or basic auth with passwords."""
    if options.auth:
        return True
    credentials = list(options.basic_auth or [])
    return bool(credentials) and all(
        user and password for user, _, password in (c.partition(":") for c in credentials)
    )


def warn_placeholder_password(options: Any) -> None:
    """Log a must-change warning for each basic-auth user whose password is the placeholder.

    docker-compose.yml defaults Flower's basic auth so that a fresh clone starts; that default
    is public, so it is fine on a laptop's loopback and nowhere else. The password is not logged.
    """
    for credential in options.basic_auth or []:
        user, _, password = credential.partition(":")
        if password == PLACEHOLDER_PASSWORD:
            logger.warning(
                "MUST CHANGE: Flower's basic auth for user %r is the placeholder password of "
                "docker-compose.yml and .env.example; set TASKAPP_FLOWER_BASIC_AUTH=user:password "
                "before anyone but you can reach this Flower",
                user,
            )


def _is_loopback(host: str) -> bool:
    address = ipaddress.ip_address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def refuse_unauthenticated(sockets: list[socket.socket], options: Any) -> None:
    """Exit (status 1, one line) if a bound socket is outside loopback and Flower has no auth."""
    exposed = [s.getsockname()[:2] for s in sockets if not _is_loopback(s.getsockname()[0])]
    if not exposed or authenticated(options):
        return
    for sock in sockets:
        sock.close()
    where = ", ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in exposed)
    raise SystemExit(REFUSAL.format(where=where))

"""Log lines as JSON when ``TASKAPP_LOG_FORMAT=json``; Celery's own text lines otherwise.

Why: Celery formats for a terminal. A worker writes ``[time: LEVEL/Process] message`` lines, a
multi-line banner with ``print()``, and tracebacks across lines; a log shipper cannot split or
parse that, and nothing says which task a line belongs to unless the message happens to.

What: with ``json``, every handler Celery sets up (worker, its pool children, beat), Flower's
tornado handler and the ``taskapp`` CLI's get :class:`TaskJsonFormatter` (python-json-logger):
one JSON object per line with ``timestamp``, ``level``, ``logger``, ``process`` and ``message``
(and ``exc_info``), plus ``task_id``, ``task_name``, ``queue`` and ``retries`` on every line
written while a task runs, whichever logger wrote it (Celery's ``TaskFormatter`` does the same
for two fields and the ``celery.task`` logger only). The worker's and beat's banners, which are
``print()`` and not logging, become one JSON line each. Celery's handlers, levels and
``--logfile`` stay Celery's: only the formatters change.

Nothing more than the text line shows: Celery passes task args, kwargs and return values as an
``extra={"data": ...}`` for custom handlers, and a JSON formatter would print every extra, so
``data`` is dropped. Settings are never logged (secrets are masked there anyway).

With ``text`` (the default) nothing here changes anything. Cost: one cached settings read per
logging set-up; per line, one lookup of the current task.
"""

from __future__ import annotations

import functools
import logging
import sys
from typing import Any

from celery import signals
from celery._state import get_current_task
from celery.utils.log import get_multiprocessing_logger
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

__all__ = ["TaskJsonFormatter", "configure_cli_logging", "hook_logs", "task_fields", "use_json"]

logger = logging.getLogger(__name__)


def use_json() -> bool:
    """Whether this process logs JSON (``TASKAPP_LOG_FORMAT``, read when asked)."""
    from config.settings import load_settings

    return load_settings().log_format == "json"


def task_fields() -> dict[str, Any]:
    """Id, name, queue and retries of the task this thread is running; empty outside a task."""
    task = get_current_task()
    request = task.request if task is not None else None
    if request is None or request.id is None:
        return {}
    delivery = request.delivery_info or {}
    return {
        "task_id": request.id,
        "task_name": task.name,
        "queue": delivery.get("routing_key"),
        "retries": request.retries,
    }


class TaskJsonFormatter(JsonFormatter):
    """One JSON object per record, with the running task's id, name, queue and retries."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(processName)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger", "processName": "process"},
            # Celery's `data` extra holds task args, kwargs and return values.
            reserved_attrs=[*RESERVED_ATTRS, "data"],
            timestamp=True,
        )

    def add_fields(
        self, log_record: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        """Add the standard fields, then the current task's (they win over a same-named extra)."""
        super().add_fields(log_record, record, message_dict)
        log_record.update(task_fields())


def _format_as_json(logger: logging.Logger) -> None:
    for handler in logger.handlers:
        if not isinstance(handler.formatter, TaskJsonFormatter):
            handler.setFormatter(TaskJsonFormatter())


def _after_setup_logger(logger: logging.Logger, **_: Any) -> None:
    # Celery configured the root logger and the multiprocessing logger, each with a handler.
    if use_json():
        _format_as_json(logger)
        multiprocessing_logger = get_multiprocessing_logger()  # None only without billiard
        if multiprocessing_logger is not None:
            _format_as_json(multiprocessing_logger)


def _after_setup_task_logger(logger: logging.Logger, **_: Any) -> None:
    if use_json():
        _format_as_json(logger)


def _until_celery_sets_up(**_: Any) -> None:
    # A worker warns (running as root) before Celery sets up logging; Celery's set-up later
    # replaces this handler (worker_hijack_root_logger).
    if use_json():
        _json_on_stderr(logging.INFO)


def _worker_banner(sender: str, instance: Any, **_: Any) -> None:
    # Runs just before the worker prints its banner; in JSON it is one line instead.
    if use_json():
        instance.quiet = True
        queues = sorted(q.name for q in instance.app.amqp.queues.consume_from.values())
        logger.info(
            "worker %s starting",
            sender,
            extra={"hostname": sender, "queues": queues, "concurrency": instance.concurrency},
        )


def _beat_banner(sender: Any, **_: Any) -> None:
    if use_json():
        logger.info(
            "beat starting",
            extra={
                "scheduler": type(sender.scheduler).__name__,
                "schedule": sender.schedule_filename,
                "max_interval": sender.scheduler.max_interval,
            },
        )


def _quiet_beat(run: Any) -> Any:
    # Beat prints its banner before it sets up logging and has no signal before that print.
    @functools.wraps(run)
    def run_quietly(self: Any) -> Any:
        if use_json():
            self.quiet = True
            _json_on_stderr(logging.INFO)
        return run(self)

    run_quietly.taskapp_quiet = True  # type: ignore[attr-defined]
    return run_quietly


def _flower_logging() -> None:
    # Tornado's own parse callback (enable_pretty_logging) has added its handler by now.
    from config.settings import SettingError

    try:
        json_lines = use_json()
    except SettingError:
        # Runs while Flower parses its options, before taskapp/flower_setup.py reads the
        # settings and stops Flower with the one-line error (exit 2); log as text until then.
        return
    if json_lines:
        _format_as_json(logging.getLogger())


def hook_logs() -> None:
    """Connect the JSON set-up to Celery's logging signals, beat, and Flower (idempotent)."""
    from celery.apps.beat import Beat

    signals.after_setup_logger.connect(_after_setup_logger, dispatch_uid="taskapp.logs")
    signals.after_setup_task_logger.connect(_after_setup_task_logger, dispatch_uid="taskapp.logs")
    signals.celeryd_init.connect(_until_celery_sets_up, dispatch_uid="taskapp.logs")
    signals.celeryd_after_setup.connect(_worker_banner, dispatch_uid="taskapp.logs")
    signals.beat_init.connect(_beat_banner, dispatch_uid="taskapp.logs")
    if not getattr(Beat.run, "taskapp_quiet", False):
        Beat.run = _quiet_beat(Beat.run)  # type: ignore[method-assign]  # a patch, on purpose
    # Flower sets up logging through tornado's options, not Celery's. The celery CLI imports
    # Flower's command (and tornado.options) before `-A taskapp`, so only a process that may
    # run Flower has it here; importing tornado elsewhere would cost every producer.
    tornado_options = sys.modules.get("tornado.options")
    if tornado_options is not None and not getattr(tornado_options, "taskapp_hooked", False):
        tornado_options.options.add_parse_callback(_flower_logging)
        tornado_options.taskapp_hooked = True  # type: ignore[attr-defined]


def _json_on_stderr(level: int) -> None:
    """A JSON handler on stderr for a root logger nobody has set up (warnings captured)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(TaskJsonFormatter())
        root.addHandler(handler)
        root.setLevel(level)
        logging.captureWarnings(True)


def configure_cli_logging() -> None:
    """In JSON, give the ``taskapp`` CLI a stderr handler (warnings and up) that writes JSON.

    In text the CLI keeps Python's default: warnings and up as bare messages on stderr.
    A bad setting is left to the command that needs settings, which reports it in one line.
    """
    from config.settings import SettingError

    try:
        json_wanted = use_json()
    except SettingError:
        return
    if json_wanted:
        _json_on_stderr(logging.WARNING)

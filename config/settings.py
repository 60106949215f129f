"""Typed settings read from the environment, validated once at start-up.

Every setting is declared once in ``SETTINGS``; the README's settings table is generated from
the same declarations (``taskapp settings --markdown``) and a test keeps the two in step.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["Secret", "SettingError", "Settings", "SETTINGS", "load_settings", "settings_table"]


class SettingError(ValueError):
    """A setting has a value the application cannot start with."""

    def __init__(self, env: str, value: object, allowed: str) -> None:
        self.env, self.allowed = env, allowed
        super().__init__(f"{env}={value!r} is invalid: allowed values are {allowed}")


class Secret(str):
    """A string that never shows its value in ``repr``/``str`` formatting of settings."""

    def __repr__(self) -> str:
        return "Secret('********')" if self else "Secret('')"

    def reveal(self) -> str:
        """The real value, for the one place that needs it."""
        return str.__str__(self)


@dataclass(frozen=True)
class Spec:
    """One setting: its environment variable, type, default and documentation."""

    env: str
    parse: Callable[[str], Any]
    default: Any
    doc: str
    allowed: str = ""

    def read(self, environ: Mapping[str, str]) -> Any:
        raw = environ.get(self.env)
        if raw is None or raw == "":
            return self.default
        try:
            return self.parse(raw)
        except ValueError as exc:
            raise SettingError(self.env, raw, self.allowed or str(exc)) from None


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(f"an integer from {low} to {high}")
        return value

    return parse


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in options:
            raise ValueError(" | ".join(options))
        return raw

    return parse


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("1/0, true/false, yes/no, on/off")


def _prefix(raw: str) -> str:
    # SQS queue names allow alphanumerics, '-' and '_' (80 chars with our longest suffix).
    if len(raw) > 40 or not all(c.isalnum() or c in "-_" for c in raw):
        raise ValueError("up to 40 characters of letters, digits, '-' and '_'")
    return raw


def _families(raw: str) -> tuple[str, ...]:
    from taskapp.queues import Family

    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    known = {family.value for family in Family}
    if not set(names) <= known:
        raise ValueError("a comma-separated list of " + ", ".join(sorted(known)))
    return names


def _font_file(raw: str) -> str:
    if not raw.lower().endswith((".ttf", ".otf")) or not os.path.isfile(raw):
        raise ValueError("the path of an existing .ttf or .otf file")
    return raw


def _float_in(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw)
        if not low <= value <= high:
            raise ValueError(f"a number from {low} to {high}")
        return value

    return parse


SETTINGS: dict[str, Spec] = {
    "queue_prefix": Spec(
        "TASKAPP_QUEUE_PREFIX",
        _prefix,
        "taskapp-",
        "Prefix of every SQS queue and SNS topic name, so environments can share an account.",
        "up to 40 characters of letters, digits, '-' and '_'",
    ),
    "database_url": Spec(
        "TASKAPP_DATABASE_URL",
        str,
        "sqlite:///var/taskapp.db",
        "SQLAlchemy URL of the application database (results, idempotency, reports). "
        "PostgreSQL: `postgresql+psycopg://user@host/db`.",
    ),
    "bucket": Spec("TASKAPP_BUCKET", str, "taskapp", "S3 bucket for images and reports."),
    "visibility_timeout": Spec(
        "TASKAPP_VISIBILITY_TIMEOUT",
        _int_in(1, 43200),
        None,
        "Override for every queue's VisibilityTimeout, in seconds. Unset: derived per queue "
        "from the hard time limits of the tasks routed to it. Must not be shorter than any "
        "queue's hard time limit.",
        "an integer from 1 to 43200, at least every queue's hard time limit",
    ),
    "max_receives": Spec(
        "TASKAPP_MAX_RECEIVES",
        _int_in(1, 1000),
        5,
        "Receives before SQS moves a message to its queue's dead-letter queue "
        "(RedrivePolicy maxReceiveCount).",
        "an integer from 1 to 1000",
    ),
    "wait_time_seconds": Spec(
        "TASKAPP_WAIT_TIME_SECONDS",
        _int_in(0, 20),
        20,
        "SQS long-poll wait of each ReceiveMessage, in seconds.",
        "an integer from 0 to 20",
    ),
    "delay_hop": Spec(
        "TASKAPP_DELAY_HOP",
        _int_in(1, 900),
        900,
        "Longest single SQS DelaySeconds hop of a countdown/ETA, in seconds; longer delays are "
        "re-published hop by hop (tests shorten it).",
        "an integer from 1 to 900",
    ),
    "heartbeat_interval": Spec(
        "TASKAPP_HEARTBEAT_INTERVAL",
        _int_in(1, 300),
        10,
        "Seconds between visibility renewals of the messages a worker holds; a dead worker's "
        "messages come back within three intervals.",
        "an integer from 1 to 300",
    ),
    "claim_check_threshold": Spec(
        "TASKAPP_CLAIM_CHECK_THRESHOLD",
        _int_in(1024, 1_048_576),
        1_040_384,
        "Message size in bytes above which the body is stored in S3 (`TASKAPP_BUCKET`) and "
        "SQS carries a pointer (SQS allows 1 MiB including attributes).",
        "an integer from 1024 to 1048576",
    ),
    "fifo_queues": Spec(
        "TASKAPP_FIFO_QUEUES",
        _families,
        (),
        "Families whose queues (and lanes and DLQs) are SQS FIFO queues (`email.fifo`): "
        "ordered per message group, deduplicated. No per-message delay; see README.",
        "a comma-separated list of cleanup, default, email, images, reports",
    ),
    "sqs_kms_key": Spec(
        "TASKAPP_SQS_KMS_KEY",
        str,
        None,
        "KMS key id, ARN or alias (`alias/aws/sqs`) that provisioning sets as every queue's "
        "`KmsMasterKeyId` (server-side encryption). Unset: SQS-managed encryption.",
    ),
    "sts_role_arn": Spec(
        "TASKAPP_STS_ROLE_ARN",
        str,
        None,
        "IAM role the worker assumes for SQS (kombu `sts_role_arn`); needs "
        "`TASKAPP_PREDEFINED_QUEUES=true`.",
    ),
    "signing_key": Spec(
        "TASKAPP_SIGNING_KEY",
        str,
        None,
        "Path of the PEM private key that signs task messages (Celery message signing). "
        "Set together with the two below; unset: messages are not signed.",
    ),
    "signing_cert": Spec(
        "TASKAPP_SIGNING_CERT",
        str,
        None,
        "Path of the PEM certificate of the signing key.",
    ),
    "signing_cert_store": Spec(
        "TASKAPP_SIGNING_CERT_STORE",
        str,
        None,
        "Directory (or glob) of the PEM certificates whose signatures are accepted.",
    ),
    "signing_max_age": Spec(
        "TASKAPP_SIGNING_MAX_AGE",
        _int_in(60, 30 * 86400),
        86400,
        "With signing on: seconds after signing (or after its ETA, if later) that a signed "
        "message is still accepted; an older replay is a dead letter with reason `signature`.",
        "an integer from 60 to 2592000",
    ),
    "claim_check_max_bytes": Spec(
        "TASKAPP_CLAIM_CHECK_MAX_BYTES",
        _int_in(1024, 2**31),
        64 * 2**20,
        "Largest claim-check object a worker reads from S3; a pointer to a bigger object is a "
        "dead letter with reason `poison`.",
        "an integer from 1024 to 2147483648",
    ),
    "predefined_queues": Spec(
        "TASKAPP_PREDEFINED_QUEUES",
        _bool,
        False,
        "Production mode: the worker resolves the provisioned queue URLs once and never "
        "lists or creates queues (no sqs:CreateQueue permission needed).",
        "true | false",
    ),
    "aws_region": Spec(
        "AWS_REGION",
        str,
        None,
        "AWS region; falls back to `AWS_DEFAULT_REGION`, then `us-east-1`.",
    ),
    "aws_endpoint_url": Spec(
        "AWS_ENDPOINT_URL",
        str,
        None,
        "Endpoint of every AWS service (the local emulator). Unset on real AWS. Credentials "
        "come from boto3's chain: environment, profile, instance role.",
    ),
    "mail_from": Spec(
        "TASKAPP_MAIL_FROM", str, "taskapp <noreply@taskapp.local>", "Sender of every email."
    ),
    "email_backend": Spec(
        "TASKAPP_EMAIL_BACKEND",
        _choice("smtp", "ses", "file"),
        "smtp",
        "Email delivery backend.",
        "smtp | ses | file",
    ),
    "smtp_url": Spec(
        "TASKAPP_SMTP_URL",
        Secret,
        Secret("smtp://127.0.0.1:8025"),
        "SMTP server, e.g. `smtp://user:pass@host:587?starttls=1` or `smtps://host:465`. "
        "Never logged.",
    ),
    "mail_dir": Spec(
        "TASKAPP_MAIL_DIR",
        str,
        "var/mail",
        "Where the `file` email backend and the local SMTP sink write `.eml` files.",
    ),
    "email_max_attachment_bytes": Spec(
        "TASKAPP_EMAIL_MAX_ATTACHMENT_BYTES",
        _int_in(1, 40 * 1024 * 1024),
        10 * 1024 * 1024,
        "Largest single email attachment, in bytes; a larger one fails the send as bad input.",
        "an integer from 1 to 41943040",
    ),
    "email_send_rate": Spec(
        "TASKAPP_EMAIL_SEND_RATE",
        _float_in(0.01, 10000.0),
        14.0,
        "Emails per second `email.send_bulk` schedules; match the SES account's maximum send "
        "rate (14/s is a common production default, 1/s in the sandbox).",
        "a number from 0.01 to 10000",
    ),
    "flower_basic_auth": Spec(
        "TASKAPP_FLOWER_BASIC_AUTH",
        Secret,
        Secret(""),
        "`user:password` for Flower; required when Flower binds a non-loopback address.",
    ),
    "log_format": Spec(
        "TASKAPP_LOG_FORMAT",
        _choice("text", "json"),
        "text",
        "Log line format: key=value text or JSON.",
        "text | json",
    ),
    "worker_concurrency": Spec(
        "TASKAPP_WORKER_CONCURRENCY",
        _int_in(1, 256),
        4,
        "Worker pool size per process.",
        "an integer from 1 to 256",
    ),
    "result_expires": Spec(
        "TASKAPP_RESULT_EXPIRES",
        _int_in(60, 90 * 86400),
        7 * 86400,
        "Seconds a task result is kept before cleanup removes it.",
        "an integer from 60 to 7776000",
    ),
    "retention_rules": Spec(
        "TASKAPP_RETENTION_RULES",
        str,
        None,
        "Path of a JSON or TOML file whose `tables`/`storage`/`hygiene` lists replace the "
        "default retention rules (`config/retention.py`).",
    ),
    "cleanup_batch_size": Spec(
        "TASKAPP_CLEANUP_BATCH_SIZE",
        _int_in(1, 20000),
        5000,
        "Rows deleted or anonymized per transaction by `cleanup.run`.",
        "an integer from 1 to 20000",
    ),
    "cleanup_hour": Spec(
        "TASKAPP_CLEANUP_HOUR",
        _int_in(0, 23),
        3,
        "UTC hour at which beat starts the nightly `cleanup.run`.",
        "an integer from 0 to 23",
    ),
    "max_image_pixels": Spec(
        "TASKAPP_MAX_IMAGE_PIXELS",
        _int_in(1, 2**31),
        64_000_000,
        "Decompression-bomb guard: largest image, in pixels, the image tasks will decode.",
        "an integer from 1 to 2147483648",
    ),
    "image_max_bytes": Spec(
        "TASKAPP_IMAGE_MAX_BYTES",
        _int_in(1, 2**31),
        20 * 1024 * 1024,
        "Largest source image, in bytes, the image tasks will download (S3 or URL); a URL "
        "fetch is aborted while streaming once it passes this.",
        "an integer from 1 to 2147483648",
    ),
    "fetch_allowlist": Spec(
        "TASKAPP_FETCH_ALLOWLIST",
        lambda raw: tuple(p.strip() for p in raw.split(",") if p),
        (),
        "Comma-separated hosts/CIDRs that URL fetches may reach although private "
        "(tests, local development). Empty in production.",
    ),
    "event_sample_rate": Spec(
        "TASKAPP_EVENT_SAMPLE_RATE",
        _float_in(0.0, 1.0),
        1.0,
        "Fraction of task events sent to monitoring (1 = all, 0 = heartbeats only).",
        "a number from 0 to 1",
    ),
    "report_url_expires": Spec(
        "TASKAPP_REPORT_URL_EXPIRES",
        _int_in(60, 7 * 86400),
        86400,
        "Seconds a report's presigned download URL stays valid (S3 allows at most 7 days).",
        "an integer from 60 to 604800",
    ),
    "report_max_days": Spec(
        "TASKAPP_REPORT_MAX_DAYS",
        _int_in(1, 3660),
        366,
        "Longest date range, in days, a report accepts; a longer one is refused as bad input.",
        "an integer from 1 to 3660",
    ),
    "report_part_days": Spec(
        "TASKAPP_REPORT_PART_DAYS",
        _int_in(1, 3660),
        31,
        "A splittable report whose range is longer than this many days is generated as parts "
        "of this many days in parallel (a Celery chord) and merged in order.",
        "an integer from 1 to 3660",
    ),
    "report_font": Spec(
        "TASKAPP_REPORT_FONT",
        _font_file,
        None,
        "TrueType/OpenType font for report charts and PDF reports. Unset: DejaVu Sans if "
        "installed (Debian's `fonts-dejavu-core`, in the Docker image), else built-in fonts "
        "with fewer characters: Pillow's (ASCII) for charts, Helvetica (Latin-1) for PDF; "
        "others print as `?`.",
        "the path of an existing .ttf or .otf file",
    ),
    "record_task_runtimes": Spec(
        "TASKAPP_RECORD_TASK_RUNTIMES",
        _bool,
        True,
        "Workers record each task execution's runtime in `reports_task_runs`, the source of "
        "the `task_activity` report's p50/p95 (Celery's result table keeps no start time).",
        "true | false",
    ),
}


@dataclass(frozen=True)
class Settings:
    """The validated settings of one process."""

    queue_prefix: str
    database_url: str
    bucket: str
    visibility_timeout: int | None
    max_receives: int
    wait_time_seconds: int
    delay_hop: int
    heartbeat_interval: int
    claim_check_threshold: int
    fifo_queues: tuple[str, ...]
    sqs_kms_key: str | None
    sts_role_arn: str | None
    signing_key: str | None
    signing_cert: str | None
    signing_cert_store: str | None
    signing_max_age: int
    claim_check_max_bytes: int
    predefined_queues: bool
    aws_region: str | None
    aws_endpoint_url: str | None
    mail_from: str
    email_backend: str
    smtp_url: Secret
    mail_dir: str
    email_max_attachment_bytes: int
    email_send_rate: float
    flower_basic_auth: Secret
    log_format: str
    worker_concurrency: int
    result_expires: int
    retention_rules: str | None
    cleanup_batch_size: int
    cleanup_hour: int
    max_image_pixels: int
    image_max_bytes: int
    fetch_allowlist: tuple[str, ...]
    event_sample_rate: float
    report_url_expires: int
    report_max_days: int
    report_part_days: int
    report_font: str | None
    record_task_runtimes: bool

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every setting; raise ``SettingError`` naming the first bad one."""
        environ = os.environ if environ is None else environ
        values = {name: spec.read(environ) for name, spec in SETTINGS.items()}
        if values["aws_region"] is None:
            values["aws_region"] = environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        signing = ("signing_key", "signing_cert", "signing_cert_store")
        if any(values[name] for name in signing) and not all(values[name] for name in signing):
            missing = next(SETTINGS[name].env for name in signing if not values[name])
            raise SettingError(missing, "", "a path (signing needs key, cert and cert store)")
        if values["sts_role_arn"] and not values["predefined_queues"]:
            raise SettingError(
                "TASKAPP_PREDEFINED_QUEUES",
                environ.get("TASKAPP_PREDEFINED_QUEUES", ""),
                "true (kombu assumes TASKAPP_STS_ROLE_ARN only for predefined queues)",
            )
        return cls(**values)

    @property
    def region(self) -> str:
        return self.aws_region or "us-east-1"

    @property
    def result_backend(self) -> str:
        """Celery's SQLAlchemy result backend on the application database."""
        return "db+" + self.database_url


assert {f.name for f in fields(Settings)} == set(SETTINGS), "Settings and SETTINGS disagree"


def load_settings() -> Settings:
    """Settings of this process, from ``os.environ``."""
    return Settings.from_env()


def settings_table() -> str:
    """The README's settings table, in Markdown."""
    rows = ["| Variable | Default | Allowed | Meaning |", "|---|---|---|---|"]
    for spec in SETTINGS.values():
        default = "" if spec.default in (None, (), "") else f"`{spec.default}`"
        if isinstance(spec.default, Secret):
            default = f"`{spec.default.reveal()}`" if spec.default else ""
        rows.append(f"| `{spec.env}` | {default} | {spec.allowed} | {spec.doc} |")
    return "\n".join(rows)

"""Typed settings read from the environment, validated once per environment.

Every setting is declared once, as a field of ``Settings`` (pydantic-settings): its environment
variable (``TASKAPP_`` + the field name, upper case), type, bounds or choices, default and
meaning. The "allowed values" of an error message and the README's settings table
(``taskapp settings --markdown``) are generated from those fields.

Secrets are ``SecretStr``: their real value comes only from ``.get_secret_value()``.
``TASKAPP_DATABASE_URL`` is a ``DatabaseUrl``, a ``SecretStr`` that shows the URL with its
password masked.
"""

from __future__ import annotations

import os
import re
import types
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

import annotated_types
from pydantic import (
    AfterValidator,
    AliasChoices,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

__all__ = [
    "DatabaseUrl",
    "FamilyName",
    "SETTINGS",
    "SettingError",
    "Settings",
    "Spec",
    "allowed_values",
    "load_settings",
    "mask_password",
    "settings_table",
]


class SettingError(ValueError):
    """A setting has a value the application cannot start with."""

    def __init__(self, env: str, value: object, allowed: str) -> None:
        self.env, self.allowed = env, allowed
        super().__init__(f"{env}={value!r} is invalid: allowed values are {allowed}")


class DatabaseUrl(SecretStr):
    """A database URL that shows itself with the password masked; the real URL is
    ``get_secret_value()``."""

    def _display(self) -> str:
        return mask_password(self.get_secret_value())


def mask_password(url: str) -> str:
    """``url`` with its password (and any ``password=`` query value) replaced by ``***``.

    Everything from the first ``:`` after ``scheme://`` to the *last* ``@`` is masked, so a
    password that holds ``@``, ``:``, ``/`` or ``%40`` never shows, even unescaped.
    """
    start = url.find("://") + 3 if "://" in url else 0
    at = url.rfind("@")
    if at > start and ":" in url[start:at]:
        user = url[start:at].split(":", 1)[0]
        url = f"{url[:start]}{user}:***{url[at:]}"
    return _PASSWORD_PARAM.sub(r"\1***", url)


_PASSWORD_PARAM = re.compile(r"([?&][^=&]*pass[^=&]*=)[^&]*", re.IGNORECASE)


@dataclass(frozen=True)
class Allowed:
    """Field metadata: allowed values, in words, that the type and bounds alone cannot say."""

    text: str


def _comma_list(raw: object) -> object:
    if isinstance(raw, str):
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    return raw


def _strip(raw: object) -> object:
    return raw.strip() if isinstance(raw, str) else raw


def _font_file(path: str) -> str:
    if not path.lower().endswith((".ttf", ".otf")) or not os.path.isfile(path):
        raise ValueError("not an existing font file")
    return path


#: Task families (``taskapp.queues.Family``; config imports nothing from taskapp, a test keeps
#: the two equal).
FamilyName = Literal["cleanup", "default", "email", "images", "reports"]
#: ``true``/``false`` (also 1/0, yes/no, on/off), surrounding blanks ignored.
Flag = Annotated[bool, BeforeValidator(_strip)]
#: A comma-separated list, as environment variables carry lists.
CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_list)]
Families = Annotated[tuple[FamilyName, ...], NoDecode, BeforeValidator(_comma_list)]
FontFile = Annotated[
    str, AfterValidator(_font_file), Allowed("the path of an existing .ttf or .otf file")
]
#: SQS queue names allow ASCII letters, digits, '-' and '_' (80 chars with our longest suffix).
QueuePrefix = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9_-]{1,40}$"),
    Allowed("up to 40 characters of letters, digits, '-' and '_'"),
]

# The mapping ``Settings.from_env`` reads; None: ``os.environ``.
_environ: ContextVar[Mapping[str, str] | None] = ContextVar("settings_environ", default=None)


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source, reading the mapping given to ``from_env``."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        environ = _environ.get()
        if environ is None:
            environ = os.environ
        # An empty variable means "unset", as in the shell and in compose files.
        return {name: value for name, value in environ.items() if value != ""}


class Settings(BaseSettings):
    """The validated settings of one process."""

    model_config = SettingsConfigDict(
        alias_generator=lambda name: "TASKAPP_" + name.upper(),
        case_sensitive=True,
        validate_by_name=True,
        frozen=True,
        extra="ignore",
    )

    queue_prefix: QueuePrefix = Field(
        default="taskapp-",
        description="Prefix of every SQS queue and SNS topic name, so environments can share an "
        "account.",
    )
    database_url: DatabaseUrl = Field(
        default=DatabaseUrl("sqlite:///var/taskapp.db"),
        description="SQLAlchemy URL of the application database (results, idempotency, "
        "reports). PostgreSQL: `postgresql+psycopg://user@host/db`. Shown with its password "
        "masked.",
    )
    bucket: str = Field(default="taskapp", description="S3 bucket for images and reports.")
    visibility_timeout: Annotated[int | None, Allowed("at least every queue's hard time limit")] = (
        Field(
            default=None,
            ge=1,
            le=43200,
            description="Override for every queue's VisibilityTimeout, in seconds. Unset: derived "
            "per queue from the hard time limits of the tasks routed to it. Must not be shorter "
            "than any queue's hard time limit.",
        )
    )
    max_receives: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Receives before SQS moves a message to its queue's dead-letter queue "
        "(RedrivePolicy maxReceiveCount).",
    )
    wait_time_seconds: int = Field(
        default=20,
        ge=0,
        le=20,
        description="SQS long-poll wait of each ReceiveMessage, in seconds.",
    )
    delay_hop: int = Field(
        default=900,
        ge=1,
        le=900,
        description="Longest single SQS DelaySeconds hop of a countdown/ETA, in seconds; longer "
        "delays are re-published hop by hop (tests shorten it).",
    )
    heartbeat_interval: int = Field(
        default=10,
        ge=1,
        le=300,
        description="Seconds between visibility renewals of the messages a worker holds, and "
        "of the idempotency claims of its running tasks; a dead worker's messages come back, "
        "and its claims expire, within three intervals.",
    )
    claim_check_threshold: int = Field(
        default=1_040_384,
        ge=1024,
        le=1_048_576,
        description="Message size in bytes above which the body is stored in S3 "
        "(`TASKAPP_BUCKET`) and SQS carries a pointer (SQS allows 1 MiB including attributes).",
    )
    fifo_queues: Families = Field(
        default=(),
        description="Families whose queues (and lanes and DLQs) are SQS FIFO queues "
        "(`email.fifo`): ordered per message group, deduplicated. No per-message delay; see "
        "README.",
    )
    sqs_kms_key: str | None = Field(
        default=None,
        description="KMS key id, ARN or alias (`alias/aws/sqs`) that provisioning sets as every "
        "queue's `KmsMasterKeyId` (server-side encryption). Unset: SQS-managed encryption.",
    )
    sts_role_arn: str | None = Field(
        default=None,
        description="IAM role the worker assumes for SQS (kombu `sts_role_arn`); needs "
        "`TASKAPP_PREDEFINED_QUEUES=true`.",
    )
    signing_key: str | None = Field(
        default=None,
        description="Path of the PEM private key that signs task messages (Celery message "
        "signing). Set together with the two below; unset: messages are not signed.",
    )
    signing_cert: str | None = Field(
        default=None, description="Path of the PEM certificate of the signing key."
    )
    signing_cert_store: str | None = Field(
        default=None,
        description="Directory (or glob) of the PEM certificates whose signatures are accepted.",
    )
    signing_max_age: int = Field(
        default=86400,
        ge=60,
        le=30 * 86400,
        description="With signing on: seconds after signing (or after its ETA, if later) that a "
        "signed message is still accepted; an older replay is a dead letter with reason "
        "`signature`.",
    )
    claim_check_max_bytes: int = Field(
        default=64 * 2**20,
        ge=1024,
        le=2**31,
        description="Largest claim-check object a worker reads from S3; a pointer to a bigger "
        "object is a dead letter with reason `poison`.",
    )
    predefined_queues: Flag = Field(
        default=False,
        description="Production mode: the worker resolves the provisioned queue URLs once and "
        "never lists or creates queues (no sqs:CreateQueue permission needed).",
    )
    aws_region: str = Field(
        default="us-east-1",
        alias="AWS_REGION",
        validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"),
        description="AWS region; falls back to `AWS_DEFAULT_REGION`, then `us-east-1`.",
    )
    aws_endpoint_url: str | None = Field(
        default=None,
        alias="AWS_ENDPOINT_URL",
        description="Endpoint of every AWS service (the local emulator). Unset on real AWS. "
        "Credentials come from boto3's chain: environment, profile, instance role.",
    )
    mail_from: str = Field(
        default="taskapp <noreply@taskapp.local>", description="Sender of every email."
    )
    email_backend: Literal["smtp", "ses", "file"] = Field(
        default="smtp", description="Email delivery backend."
    )
    smtp_url: SecretStr = Field(
        default=SecretStr("smtp://127.0.0.1:8025"),
        description="SMTP server, e.g. `smtp://user:pass@host:587?starttls=1` or "
        "`smtps://host:465`. Never logged.",
    )
    mail_dir: str = Field(
        default="var/mail",
        description="Where the `file` email backend and the local SMTP sink write `.eml` files.",
    )
    email_max_attachment_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=1,
        le=40 * 1024 * 1024,
        description="Largest single email attachment, in bytes; a larger one fails the send as "
        "bad input.",
    )
    email_send_rate: float = Field(
        default=14.0,
        ge=0.01,
        le=10000.0,
        description="Emails per second `email.send_bulk` schedules; match the SES account's "
        "maximum send rate (14/s is a common production default, 1/s in the sandbox).",
    )
    flower_basic_auth: SecretStr = Field(
        default=SecretStr(""),
        description="`user:password` for Flower; required when Flower binds a non-loopback "
        "address.",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Address `taskapp metrics` listens on; `--host` overrides it. Its metrics "
        "carry no secrets, but queue names and worker host names: keep it off public networks.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log line format: key=value text or JSON."
    )
    tracing: Annotated[
        str,
        Field(pattern=r"^(auto|off|console|otlp|file:.+)$"),
        Allowed("auto | off | console | otlp | file:<path>"),
    ] = Field(
        default="auto",
        description="OpenTelemetry traces (taskapp/tracing.py): auto is otlp when "
        "OTEL_EXPORTER_OTLP_ENDPOINT is set, else off; console writes JSON span lines to stderr, "
        "file:<path> appends them to a file.",
    )
    worker_concurrency: int = Field(
        default=4, ge=1, le=256, description="Worker pool size per process."
    )
    result_expires: int = Field(
        default=7 * 86400,
        ge=60,
        le=90 * 86400,
        description="Seconds a task result is kept before cleanup removes it.",
    )
    retention_rules: str | None = Field(
        default=None,
        description="Path of a JSON or TOML file whose `tables`/`storage`/`hygiene` lists "
        "replace the default retention rules (`config/retention.py`).",
    )
    cleanup_batch_size: int = Field(
        default=5000,
        ge=1,
        le=20000,
        description="Rows deleted or anonymized per transaction by `cleanup.run`.",
    )
    cleanup_hour: int = Field(
        default=3,
        ge=0,
        le=23,
        description="UTC hour at which beat starts the nightly `cleanup.run`.",
    )
    max_image_pixels: int = Field(
        default=64_000_000,
        ge=1,
        le=2**31,
        description="Decompression-bomb guard: largest image, in pixels, the image tasks will "
        "decode.",
    )
    image_max_bytes: int = Field(
        default=20 * 1024 * 1024,
        ge=1,
        le=2**31,
        description="Largest source image, in bytes, the image tasks will download (S3 or URL); "
        "a URL fetch is aborted while streaming once it passes this.",
    )
    fetch_allowlist: CommaList = Field(
        default=(),
        description="Comma-separated hosts/CIDRs that URL fetches may reach although private "
        "(tests, local development). Empty in production.",
    )
    event_sample_rate: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="Fraction of task events sent to monitoring (1 = all, 0 = heartbeats only).",
    )
    report_url_expires: int = Field(
        default=86400,
        ge=60,
        le=7 * 86400,
        description="Seconds a report's presigned download URL stays valid (S3 allows at most 7 "
        "days).",
    )
    report_max_days: int = Field(
        default=366,
        ge=1,
        le=3660,
        description="Longest date range, in days, a report accepts; a longer one is refused as "
        "bad input.",
    )
    report_part_days: int = Field(
        default=31,
        ge=1,
        le=3660,
        description="A splittable report whose range is longer than this many days is generated "
        "as parts of this many days in parallel (a Celery chord) and merged in order.",
    )
    report_font: FontFile | None = Field(
        default=None,
        description="TrueType/OpenType font for report charts and PDF reports. Unset: DejaVu "
        "Sans if installed (Debian's `fonts-dejavu-core`, in the Docker image), else built-in "
        "fonts with fewer characters: Pillow's (ASCII) for charts, Helvetica (Latin-1) for PDF; "
        "others print as `?`.",
    )
    record_task_runtimes: Flag = Field(
        default=True,
        description="Workers record each task execution's runtime in `reports_task_runs`, the "
        "source of the `task_activity` report's p50/p95 (Celery's result table keeps no start "
        "time).",
    )

    @model_validator(mode="after")
    def _settings_that_go_together(self) -> Settings:
        signing = {"signing_key": self.signing_key, "signing_cert": self.signing_cert}
        signing["signing_cert_store"] = self.signing_cert_store
        if any(signing.values()) and not all(signing.values()):
            missing = next(name for name, value in signing.items() if not value)
            raise SettingError(_env(missing), "", "a path (signing needs key, cert and cert store)")
        if self.sts_role_arn and not self.predefined_queues:
            raise SettingError(
                _env("predefined_queues"),
                "false",
                "true (kombu assumes TASKAPP_STS_ROLE_ARN only for predefined queues)",
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment only: no .env file or secrets directory is read behind our back.
        return init_settings, _Environment(settings_cls)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every setting; raise ``SettingError`` naming the first bad one."""
        token = _environ.set(environ)
        try:
            return cls()
        except ValidationError as exc:
            raise _setting_error(exc, os.environ if environ is None else environ) from None
        finally:
            _environ.reset(token)

    @property
    def region(self) -> str:
        """The AWS region every client uses."""
        return self.aws_region

    @property
    def result_backend(self) -> str:
        """Celery's SQLAlchemy result backend on the application database (the real URL)."""
        return "db+" + self.database_url.get_secret_value()


def _env_names(field: FieldInfo) -> tuple[str, ...]:
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(choice for choice in alias.choices if isinstance(choice, str))
    return (alias,) if isinstance(alias, str) else (str(field.alias),)


def _env(name: str) -> str:
    return _env_names(Settings.model_fields[name])[0]


def _setting_error(exc: ValidationError, environ: Mapping[str, str]) -> SettingError:
    error = exc.errors()[0]
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, SettingError):  # raised by a model validator
        return cause
    name = next(
        (n for n, f in Settings.model_fields.items() if error["loc"][0] in (n, *_env_names(f))),
        None,
    )
    if name is None:
        return SettingError(str(error["loc"][0]), error["input"], error["msg"])
    field = Settings.model_fields[name]
    env = next((e for e in _env_names(field) if environ.get(e)), _env_names(field)[0])
    return SettingError(env, environ.get(env, error["input"]), allowed_values(field))


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """``(int, [notes])`` for ``Annotated[int, notes] | None``: the type and its metadata."""
    metadata: list[Any] = []
    while True:
        if get_origin(annotation) is Annotated:
            annotation, *notes = get_args(annotation)
            metadata += notes
        elif get_origin(annotation) in (Union, types.UnionType):
            annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
        else:
            return annotation, metadata


def allowed_values(field: FieldInfo) -> str:
    """The allowed values of a setting, in words, from its type, bounds and ``Allowed`` notes."""
    kind, notes = _unwrap(field.annotation)
    notes += field.metadata
    item = _unwrap(get_args(kind)[0])[0] if get_origin(kind) is tuple else None
    words: list[str] = []
    if kind is bool:
        words.append("true | false")
    elif get_origin(kind) is Literal:
        words.append(" | ".join(get_args(kind)))
    elif get_origin(item) is Literal:
        words.append("a comma-separated list of " + ", ".join(sorted(get_args(item))))
    elif kind in (int, float):
        low = next(note.ge for note in notes if isinstance(note, annotated_types.Ge))
        high = next(note.le for note in notes if isinstance(note, annotated_types.Le))
        if kind is int:
            words.append(f"an integer from {low} to {high}")
        else:
            words.append(f"a number from {low:g} to {high:g}")
    words += [note.text for note in notes if isinstance(note, Allowed)]
    return ", ".join(words)


class Spec(NamedTuple):
    """One setting as documented: environment variable, default, allowed values, meaning."""

    env: str
    default: object
    allowed: str
    doc: str


def _documented_default(default: object) -> str:
    if isinstance(default, SecretStr):
        default = default.get_secret_value()  # a default is in this file, not a secret
    if default in (None, (), ""):
        return ""
    return f"`{str(default).lower() if isinstance(default, bool) else default}`"


#: Every setting by field name, as the README documents it (generated from ``Settings``).
SETTINGS: Mapping[str, Spec] = {
    name: Spec(_env(name), field.default, allowed_values(field), field.description or "")
    for name, field in Settings.model_fields.items()
}

#: Every environment variable a setting reads, fallbacks included.
ENV_NAMES: tuple[str, ...] = tuple(
    env for field in Settings.model_fields.values() for env in _env_names(field)
)


_RAW_NAMES = tuple(map(getattr(os.environ, "encodekey", lambda name: name), ENV_NAMES))


def _environment_key() -> tuple[object, ...]:
    # os.environ.get costs ~2 us per unset name (it raises and catches KeyError); looking the
    # raw names up in the dict behind os.environ costs ~0.1 us. Both see every change made
    # through os.environ (monkeypatch.setenv, putenv via os.environ).
    data = getattr(os.environ, "_data", None)
    if isinstance(data, dict):
        return tuple(map(data.get, _RAW_NAMES))
    return tuple(map(os.environ.get, ENV_NAMES))


@lru_cache(maxsize=16)
def _settings_for(key: tuple[object, ...]) -> Settings:
    return Settings.from_env()


def load_settings() -> Settings:
    """Settings of this process, from ``os.environ``; parsed once per distinct environment."""
    return _settings_for(_environment_key())


def settings_table() -> str:
    """The README's settings table, in Markdown."""
    rows = ["| Variable | Default | Allowed | Meaning |", "|---|---|---|---|"]
    for spec in SETTINGS.values():
        default = _documented_default(spec.default)
        # A '|' inside a cell ends the cell in Markdown ("true | false" made two columns).
        allowed = spec.allowed.replace("|", "\\|")
        rows.append(f"| `{spec.env}` | {default} | {allowed} | {spec.doc} |")
    return "\n".join(rows)

"""Settings: declared once, validated at start-up, secrets masked, documented in the README."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import SecretStr

from config.settings import (
    SETTINGS,
    FamilyName,
    SettingError,
    Settings,
    load_settings,
    settings_table,
)
from taskapp.cli import main
from taskapp.cli.settings import README_MARKERS
from taskapp.queues import Family, QueueSpec, effective_specs, fifo_families

ROOT = Path(__file__).resolve().parents[2]
ENV = {name: spec.env for name, spec in SETTINGS.items()}


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings.queue_prefix == "taskapp-"
    assert settings.database_url.get_secret_value().startswith("sqlite:///var/")
    assert settings.max_receives == 5
    assert settings.region == "us-east-1"


def test_region_falls_back_to_aws_default_region() -> None:
    assert Settings.from_env({"AWS_DEFAULT_REGION": "eu-west-1"}).region == "eu-west-1"
    empty = {"AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": ""}
    assert Settings.from_env(empty).region == "eu-west-1"
    both = {"AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "ap-south-1"}
    assert Settings.from_env(both).region == "ap-south-1"


# Bad values of every setting that has allowed values (a test below keeps this list complete).
BAD_VALUES: dict[str, list[str]] = {
    "queue_prefix": ["has space", "x" * 41, "émigré", "a.b", "prefix\n"],
    "visibility_timeout": ["0", "-3", "43201", "soon"],
    "max_receives": ["0", "1001", "many", "1.5"],
    "wait_time_seconds": ["-1", "21"],
    "delay_hop": ["0", "901"],
    "heartbeat_interval": ["0", "301"],
    "claim_check_threshold": ["1023", "1048577"],
    "fifo_queues": ["nope", "email,nope", "email;images"],
    "signing_max_age": ["59", "2592001"],
    "claim_check_max_bytes": ["1023", "2147483649"],
    "predefined_queues": ["maybe", "2", "ja"],
    "email_backend": ["carrier-pigeon", "SMTP"],
    "email_max_attachment_bytes": ["0", "41943041"],
    "email_send_rate": ["0", "10000.5", "nan", "inf", "fast"],
    "log_format": ["xml", "JSON"],
    "tracing": ["on", "Console", "file:", "otlp ", "jaeger"],
    "worker_concurrency": ["0", "257"],
    "result_expires": ["59", "7776001"],
    "cleanup_batch_size": ["0", "20001"],
    "cleanup_hour": ["-1", "24"],
    "max_image_pixels": ["0", "2147483649"],
    "image_max_bytes": ["0", "2147483649"],
    "event_sample_rate": ["-0.1", "1.5", "nan"],
    "report_url_expires": ["59", "604801"],
    "report_max_days": ["0", "3661"],
    "report_part_days": ["0", "3661"],
    "report_font": ["/no/such/font.ttf", "/etc/hostname", "/tmp"],
    "record_task_runtimes": ["sometimes"],
}


def _refused(env: str, value: str) -> SettingError:
    with pytest.raises(SettingError) as caught:
        Settings.from_env({env: value})
    return caught.value


@pytest.mark.parametrize(
    ("name", "value"), [(name, value) for name, values in BAD_VALUES.items() for value in values]
)
def test_a_bad_value_is_one_line_naming_the_variable_and_the_documented_values(
    name: str, value: str
) -> None:
    # given the variable and the allowed values the README documents for it
    env, allowed = ENV[name], SETTINGS[name].allowed
    # when the bad value is read, then the error says exactly that, in one line
    error = _refused(env, value)
    assert str(error) == f"{env}={value!r} is invalid: allowed values are {allowed}"
    assert (error.env, error.allowed) == (env, allowed)
    assert "\n" not in str(error)


def test_every_setting_with_allowed_values_has_bad_values_tested() -> None:
    constrained = {name for name, spec in SETTINGS.items() if spec.allowed}
    assert constrained == set(BAD_VALUES)


NUMERIC = [name for name, spec in SETTINGS.items() if spec.allowed.startswith(("an int", "a num"))]


@given(name=st.sampled_from(NUMERIC), raw=st.text(min_size=1) | st.integers().map(str))
@hypothesis_settings(max_examples=300, deadline=None)
def test_a_number_setting_is_in_its_bounds_or_refused_by_name(name: str, raw: str) -> None:
    env, allowed = ENV[name], SETTINGS[name].allowed
    low, high = (float(n) for n in re.findall(r"from (\S+) to (\d+)", allowed)[0])
    try:
        value = getattr(Settings.from_env({env: raw}), name)
    except SettingError as error:
        assert str(error) == f"{env}={raw!r} is invalid: allowed values are {allowed}"
        return
    assert low <= value <= high
    if re.fullmatch(r"-?\d+", raw):
        assert value == int(raw)


@given(st.text(max_size=50))
@hypothesis_settings(max_examples=300, deadline=None)
def test_queue_prefix_is_what_sqs_accepts_in_a_queue_name(raw: str) -> None:
    # SQS queue names: ASCII letters, digits, '-' and '_' only.
    valid = re.fullmatch(r"[A-Za-z0-9_-]{1,40}", raw) is not None
    try:
        prefix = Settings.from_env({"TASKAPP_QUEUE_PREFIX": raw}).queue_prefix
    except SettingError as error:
        assert not valid
        assert error.env == "TASKAPP_QUEUE_PREFIX"
        return
    assert prefix == (raw or "taskapp-")
    assert valid or raw == ""


@given(st.sampled_from(["predefined_queues", "record_task_runtimes"]), st.text(max_size=8))
@hypothesis_settings(max_examples=200, deadline=None)
def test_a_flag_is_true_false_or_refused(name: str, raw: str) -> None:
    word = raw.strip().lower()
    try:
        value = getattr(Settings.from_env({ENV[name]: raw}), name)
    except SettingError as error:
        assert word not in {"1", "true", "yes", "on", "0", "false", "no", "off"}
        assert error.allowed == "true | false"
        return
    if word in {"1", "true", "yes", "on"}:
        assert value is True
    elif word in {"0", "false", "no", "off"}:
        assert value is False


@given(st.lists(st.sampled_from([*get_args(FamilyName), "nope", "", " email "]), max_size=4))
@hypothesis_settings(max_examples=100, deadline=None)
def test_fifo_queues_are_known_families(names: list[str]) -> None:
    raw = ",".join(names)
    wanted = tuple(name.strip() for name in names if name.strip())
    try:
        value = Settings.from_env({"TASKAPP_FIFO_QUEUES": raw}).fifo_queues
    except SettingError:
        assert "nope" in wanted
        return
    assert value == wanted


def test_the_settings_know_every_task_family() -> None:
    assert set(get_args(FamilyName)) == {family.value for family in Family}


def test_fifo_families_come_from_the_validated_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKAPP_FIFO_QUEUES", "email, reports")
    assert fifo_families() == {Family.EMAIL, Family.REPORTS}
    monkeypatch.setenv("TASKAPP_FIFO_QUEUES", "email,nope")
    with pytest.raises(SettingError, match="TASKAPP_FIFO_QUEUES"):
        fifo_families()


def test_visibility_override_shorter_than_a_hard_limit_is_refused() -> None:
    specs = [QueueSpec("images", 180, 150, ("images.thumbnails",))]
    settings = Settings.from_env({"TASKAPP_VISIBILITY_TIMEOUT": "60"})
    with pytest.raises(SettingError, match="at least 150 .*queue 'images'"):
        effective_specs(specs, settings)
    ok = Settings.from_env({"TASKAPP_VISIBILITY_TIMEOUT": "200"})
    assert effective_specs(specs, ok)[0].visibility_timeout == 200


def test_secrets_never_appear_in_repr() -> None:
    settings = Settings.from_env(
        {"TASKAPP_SMTP_URL": "smtp://bob:hunter2@mail:587", "TASKAPP_FLOWER_BASIC_AUTH": "a:s3cret"}
    )
    assert "hunter2" not in repr(settings)
    assert "s3cret" not in repr(settings)
    assert isinstance(settings.smtp_url, SecretStr)
    assert settings.smtp_url.get_secret_value() == "smtp://bob:hunter2@mail:587"


def _shown(monkeypatch: pytest.MonkeyPatch, url: str) -> list[str]:
    """Every way settings are shown: repr, str, format, and `taskapp settings`."""
    monkeypatch.setenv("TASKAPP_DATABASE_URL", url)
    settings = load_settings()
    cli = CliRunner().invoke(main, ["settings"])
    assert cli.exit_code == 0, cli.output
    url_value = settings.database_url
    return [repr(settings), str(settings), f"{url_value}", repr(url_value), cli.output]


@pytest.mark.parametrize(
    "password",
    ["Zq7xW3vLpR9", "Zq7@xW3%40vL:pR9", "Zq7%40xW3", "Zq7/xW3?vL#pR9@", "Zq7:xW3"],
)
def test_the_database_password_is_never_shown(
    monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    # given a PostgreSQL URL whose password is distinctive (some with '@', '%40', ':', '/')
    url = f"postgresql+psycopg://alice:{password}@db.internal:5432/app?sslmode=require"
    # when the settings are shown in every way they can be
    shown = _shown(monkeypatch, url)
    # then no piece of the password shows, but user, host and database do
    pieces = [p for p in re.split(r"@|%40|:|/|\?|#", password) if p]
    for text in shown:
        assert not any(piece in text for piece in pieces), text
        assert "alice:***@db.internal:5432/app?sslmode=require" in text
    # and the one accessor gives the real URL to the code that connects
    assert load_settings().database_url.get_secret_value() == url
    assert load_settings().result_backend == "db+" + url


@given(
    st.text(
        alphabet=st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%:/?#!$&'()*+,;="),
        min_size=1,
    ).filter(lambda password: any(c.isupper() for c in password))
)
@hypothesis_settings(max_examples=200, deadline=None)
def test_no_password_character_survives_masking(password: str) -> None:
    # The rest of the URL is lower case: an upper-case letter shown is a password leak.
    url = f"postgresql+psycopg://alice:{password}@db.internal:5432/app"
    settings = Settings.from_env({"TASKAPP_DATABASE_URL": url})
    in_repr = repr(settings).split("database_url=DatabaseUrl(", 1)[1].split(", bucket=", 1)[0]
    for text in (in_repr, str(settings.database_url)):
        assert text.removeprefix("'").startswith("postgresql+psycopg://alice:***@")
        assert not any(c.isupper() for c in text), text
    assert settings.database_url.get_secret_value() == url


def test_a_password_in_the_query_string_is_masked_too() -> None:
    url = "postgresql+psycopg://alice@db/app?password=Zq7xW3&sslmode=require"
    shown = str(Settings.from_env({"TASKAPP_DATABASE_URL": url}).database_url)
    assert shown == "postgresql+psycopg://alice@db/app?password=***&sslmode=require"


def test_a_url_without_password_shows_unchanged() -> None:
    for url in ("sqlite:///var/taskapp.db", "sqlite:////tmp/a@b.db", "postgresql://u@h/db"):
        assert str(Settings.from_env({"TASKAPP_DATABASE_URL": url}).database_url) == url


def test_load_settings_is_cached_and_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given settings loaded once
    first = load_settings()
    # then loading again parses nothing: the same object
    assert load_settings() is first
    # when a test (or anything) changes a variable, the next load sees it
    monkeypatch.setenv("TASKAPP_MAX_RECEIVES", str(first.max_receives % 1000 + 1))
    assert load_settings().max_receives == first.max_receives % 1000 + 1
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-north-1")
    monkeypatch.delenv("AWS_REGION", raising=False)
    assert load_settings().region == "eu-north-1"
    # and undoing the change gives the first settings back
    monkeypatch.undo()
    assert load_settings() is first


def test_readme_settings_table_is_the_generated_one() -> None:
    start, end = README_MARKERS
    readme = (ROOT / "README.md").read_text()
    documented = readme.split(start, 1)[1].split(end, 1)[0]
    assert documented == settings_table() + "\n", "run `uv run taskapp settings --readme README.md`"


def test_the_readme_table_has_four_cells_per_row() -> None:
    # '|' in a cell ("true | false") must be escaped, or the row grows columns.
    for row in settings_table().splitlines():
        assert len(re.split(r"(?<!\\)\|", row)) == 6, row


def _run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TASKAPP_")}
    return subprocess.run(
        argv, env={**clean, **env}, capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_cli_reports_a_bad_setting_in_one_line() -> None:
    taskapp = str(Path(sys.executable).with_name("taskapp"))
    done = _run([taskapp, "queues", "provision"], TASKAPP_VISIBILITY_TIMEOUT="5")
    assert done.returncode == 2
    assert "configuration error: TASKAPP_VISIBILITY_TIMEOUT=5" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("role", ["worker", "beat", "flower"])
def test_celery_processes_refuse_to_start_on_a_bad_setting(role: str) -> None:
    argv = [sys.executable, "-m", "celery", "-A", "taskapp", role]
    done = _run(argv, TASKAPP_MAX_RECEIVES="abc")
    assert done.returncode == 2, done.stderr
    line = "TASKAPP_MAX_RECEIVES='abc' is invalid: allowed values are an integer from 1 to 1000"
    assert done.stderr.strip().splitlines()[-1] == f"taskapp: configuration error: {line}"
    assert "Traceback" not in done.stderr


def test_sts_role_needs_predefined_queues() -> None:
    with pytest.raises(SettingError, match="TASKAPP_PREDEFINED_QUEUES"):
        Settings.from_env({"TASKAPP_STS_ROLE_ARN": "arn:aws:iam::1:role/w"})
    ok = {"TASKAPP_STS_ROLE_ARN": "arn:aws:iam::1:role/w", "TASKAPP_PREDEFINED_QUEUES": "true"}
    assert Settings.from_env(ok).sts_role_arn == "arn:aws:iam::1:role/w"


def test_signing_needs_key_cert_and_store_together() -> None:
    with pytest.raises(SettingError, match="TASKAPP_SIGNING_CERT="):
        Settings.from_env({"TASKAPP_SIGNING_KEY": "/k.pem"})

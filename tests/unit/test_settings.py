"""Settings: typed, validated at start-up, secrets masked, documented in one README table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import SETTINGS, Secret, SettingError, Settings, settings_table
from taskapp.queues import QueueSpec
from taskapp.sqs.provision import effective_specs

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})
    assert settings.queue_prefix == "taskapp-"
    assert settings.database_url.startswith("sqlite:///var/")
    assert settings.max_receives == 5
    assert settings.region == "us-east-1"


def test_region_falls_back_to_aws_default_region() -> None:
    assert Settings.from_env({"AWS_DEFAULT_REGION": "eu-west-1"}).region == "eu-west-1"
    both = {"AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "ap-south-1"}
    assert Settings.from_env(both).region == "ap-south-1"


@pytest.mark.parametrize(
    ("env", "value", "allowed"),
    [
        ("TASKAPP_MAX_RECEIVES", "0", "an integer from 1 to 1000"),
        ("TASKAPP_MAX_RECEIVES", "many", "an integer from 1 to 1000"),
        ("TASKAPP_VISIBILITY_TIMEOUT", "-3", "an integer from 1 to 43200"),
        ("TASKAPP_EMAIL_BACKEND", "carrier-pigeon", "smtp | ses | file"),
        ("TASKAPP_QUEUE_PREFIX", "has space", "letters, digits"),
    ],
)
def test_bad_setting_names_itself_and_allowed_values(env: str, value: str, allowed: str) -> None:
    with pytest.raises(SettingError) as caught:
        Settings.from_env({env: value})
    assert env in str(caught.value) and allowed in str(caught.value)


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
    assert "hunter2" not in repr(settings) and "s3cret" not in repr(settings)
    assert isinstance(settings.smtp_url, Secret)
    assert settings.smtp_url.reveal() == "smtp://bob:hunter2@mail:587"


def test_readme_settings_table_is_generated_from_the_declarations() -> None:
    readme = (ROOT / "README.md").read_text()
    assert settings_table() in readme, "run `uv run taskapp settings --markdown` into README.md"
    for spec in SETTINGS.values():
        assert f"`{spec.env}`" in readme


def _run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TASKAPP_")}
    return subprocess.run(
        argv, env={**clean, **env}, capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_cli_reports_a_bad_setting_in_one_line() -> None:
    taskapp = str(Path(sys.executable).with_name("taskapp"))
    done = _run([taskapp, "queues", "provision"], TASKAPP_VISIBILITY_TIMEOUT="5")
    assert done.returncode == 2
    assert "configuration error: TASKAPP_VISIBILITY_TIMEOUT=5" in done.stderr
    assert "Traceback" not in done.stderr


def test_worker_refuses_to_start_on_a_bad_setting() -> None:
    argv = [sys.executable, "-m", "celery", "-A", "taskapp", "worker"]
    done = _run(argv, TASKAPP_MAX_RECEIVES="abc")
    assert done.returncode == 2
    assert "TASKAPP_MAX_RECEIVES='abc' is invalid: allowed values are an integer" in done.stderr


def test_sts_role_needs_predefined_queues() -> None:
    with pytest.raises(SettingError, match="TASKAPP_PREDEFINED_QUEUES"):
        Settings.from_env({"TASKAPP_STS_ROLE_ARN": "arn:aws:iam::1:role/w"})
    ok = {"TASKAPP_STS_ROLE_ARN": "arn:aws:iam::1:role/w", "TASKAPP_PREDEFINED_QUEUES": "true"}
    assert Settings.from_env(ok).sts_role_arn == "arn:aws:iam::1:role/w"


def test_signing_needs_key_cert_and_store_together() -> None:
    with pytest.raises(SettingError, match="TASKAPP_SIGNING_CERT="):
        Settings.from_env({"TASKAPP_SIGNING_KEY": "/k.pem"})

"""``config/flowerconfig.py``: never open without authentication outside loopback."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest

from config.settings import SettingError

CONFIG = Path(__file__).resolve().parents[2] / "config" / "flowerconfig.py"


def _load(monkeypatch: pytest.MonkeyPatch, *argv: str, **env: str) -> dict[str, Any]:
    monkeypatch.setattr("sys.argv", ["celery", "flower", *argv])
    monkeypatch.delenv("FLOWER_ADDRESS", raising=False)
    monkeypatch.delenv("TASKAPP_FLOWER_BASIC_AUTH", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return runpy.run_path(str(CONFIG))


def test_a_public_address_without_basic_auth_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingError, match="TASKAPP_FLOWER_BASIC_AUTH"):
        _load(monkeypatch, "--address=0.0.0.0")
    with pytest.raises(SettingError, match="TASKAPP_FLOWER_BASIC_AUTH"):
        _load(monkeypatch, FLOWER_ADDRESS="10.1.2.3")


def test_a_public_address_gets_basic_auth_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _load(monkeypatch, "--address", "0.0.0.0", TASKAPP_FLOWER_BASIC_AUTH="ops:s3cret")
    assert config["basic_auth"] == ["ops:s3cret"]
    assert config["address"] == "0.0.0.0"


def test_loopback_needs_no_auth_and_flower_is_set_up_for_sqs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import flower.urls
    import flower.views

    config = _load(monkeypatch)
    assert config["address"] == "127.0.0.1" and "basic_auth" not in config
    # Flower's option types: a float timeout, events left to the workers' -E
    assert isinstance(config["inspect_timeout"], float) and config["enable_events"] is False
    assert getattr(flower.views.Broker, "taskapp_sqs", False)
    assert "template_loader" in flower.urls.settings

"""Cleanup test fixtures: an empty bucket per test, rule files."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from taskapp.aws.s3 import ensure_bucket


@pytest.fixture
def empty_bucket(s3: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, empty bucket that ``TASKAPP_BUCKET`` points at for this test."""
    name = f"cleanup-{uuid.uuid4().hex[:12]}"
    ensure_bucket(s3, name)
    monkeypatch.setenv("TASKAPP_BUCKET", name)
    return name


@pytest.fixture
def rules_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Write a retention-rules JSON file and point ``TASKAPP_RETENTION_RULES`` at it."""

    def write(**sections: list[dict[str, Any]]) -> Path:
        path = tmp_path / f"rules-{uuid.uuid4().hex[:6]}.json"
        path.write_text(json.dumps(sections))
        monkeypatch.setenv("TASKAPP_RETENTION_RULES", str(path))
        return path

    return write

"""The import-linter contract keeping taskapp.sqs self-contained names every other module."""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_sqs_contract_forbids_every_taskapp_module_but_sqs_and_config() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (contract,) = [
        c
        for c in config["tool"]["importlinter"]["contracts"]
        if c["source_modules"] == ["taskapp.sqs"]
    ]
    modules = {f"taskapp.{m.name}" for m in pkgutil.iter_modules([str(ROOT / "taskapp")])}
    assert set(contract["forbidden_modules"]) == (modules - {"taskapp.sqs"}) | {"config"}

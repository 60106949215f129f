"""`taskapp demo` covers every task family, and fails when one family's demo is missing."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from rich.console import Console

import taskapp
from taskapp.local import demo

FAMILIES = sorted(p.parent.name for p in Path(taskapp.__file__).parent.glob("*/tasks.py"))


def test_every_task_family_has_a_demo_step() -> None:
    # when the demo lists its steps
    steps = [name for name, _ in demo._steps()]
    # then there is one per family that has tasks, after the ping
    assert FAMILIES, "no task family found"
    assert steps[0] == "ping"
    assert sorted(steps[1:]) == FAMILIES


@pytest.mark.parametrize("family", FAMILIES)
def test_a_family_whose_demo_is_missing_fails_the_demo(
    family: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given one family's demo cannot be imported (None in sys.modules: as if the file were gone)
    monkeypatch.setitem(sys.modules, f"taskapp.{family}.demo", None)
    out = io.StringIO()
    # when the demo runs
    status = demo.run_demo(tmp_path / "var", Console(file=out, width=200))
    # then it fails, naming the family, before it starts anything
    assert status == 1
    assert f"demo failed: {family}:" in out.getvalue()
    assert not (tmp_path / "var").exists()

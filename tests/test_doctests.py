"""The docstring examples of every module in ``stream/`` and ``detectors/`` run and print what they show.

Modules are found from the source tree, so a new module's examples run without being listed here. Examples that
need a running broker are marked ``# doctest: +SKIP`` in their module.
"""

from __future__ import annotations

import doctest
import importlib
import io
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("detectors", "stream")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> list[str]:
    return sorted(module_name(p) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def modules_with_examples() -> list[str]:
    return [m for m in modules() if ">>>" in module_path(m).read_text()]


def module_path(name: str) -> Path:
    path = ROOT.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


@pytest.mark.parametrize("name", modules_with_examples())
def test_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner()
    out = io.StringIO()
    for test in doctest.DocTestFinder().find(module):
        runner.run(test, out=out.write)
    assert runner.failures == 0, out.getvalue()


def test_every_core_module_has_an_example() -> None:
    """The pure core reads like River: each module shows how it is used in an example that runs."""
    core = [m for m in modules() if m.startswith("detectors.")]
    assert len(core) > 10
    assert [m for m in core if m not in modules_with_examples()] == []

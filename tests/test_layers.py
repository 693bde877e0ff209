"""The import contracts of ``.importlinter`` hold: the core imports nothing of the shell, the pipeline no Faust,
nothing imports the CLI, the shell's layers and no cycles. One test per contract, so a failure names it."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".importlinter"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PREFIX = "importlinter:contract:"


def contracts() -> list[str]:
    parser = configparser.ConfigParser()
    parser.read(CONFIG)
    return [s.removeprefix(PREFIX) for s in parser.sections() if s.startswith(PREFIX)]


def lint_imports(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("contract", contracts())
def test_contract_holds(contract: str) -> None:
    res = lint_imports(CONFIG, "--contract", contract)
    assert res.returncode == 0, res.stdout + res.stderr


def test_an_import_inside_a_function_breaks_a_contract(tmp_path: Path) -> None:
    """The checker sees the lazy imports the shell uses to stay fast, so a contract cannot pass by hiding one."""
    pkg = tmp_path / "toy"
    (pkg / "core").mkdir(parents=True)
    (pkg / "shell").mkdir()
    for init in ("__init__.py", "core/__init__.py", "shell/__init__.py"):
        (pkg / init).write_text("")
    (pkg / "shell" / "cli.py").write_text("")
    (pkg / "core" / "model.py").write_text("def run():\n    from toy.shell import cli\n    return cli\n")
    config = tmp_path / "contracts.ini"
    config.write_text(f"""[importlinter]
root_package = toy

[{PREFIX}core-is-pure]
name = toy core imports no shell
type = forbidden
source_modules = toy.core
forbidden_modules = toy.shell
""")
    res = lint_imports(config, cwd=tmp_path)
    assert res.returncode == 1 and "toy core imports no shell BROKEN" in res.stdout, res.stdout + res.stderr
    assert "toy.core.model -> toy.shell.cli (l.2)" in res.stdout

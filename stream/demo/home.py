"""The demo's constants, options and home folder (wiped at start only when the demo made it)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from stream.errors import UserError

MODEL = "churn"
DEFAULT_HOME = Path(".glassbox/demo")
MARKER = ".glassbox-demo"
EXPECTED = ("data_drift", "concept_drift", "data_quality")
PREFIX = "glassbox."
APP_ID = "glassbox-demo"


class DemoError(UserError, RuntimeError):
    """The demo cannot run or did not show what it should; one line says why."""


@dataclass
class DemoOptions:
    home: Path = DEFAULT_HOME
    rows: int = 30_000
    speed: float = 1500.0  # events per second; 0 = as fast as possible
    seed: int = 7
    keep_running: bool = False
    label_delay: int = 300
    batch: int = 250


# ------------------------------------------------------------------------------------------------ the home
def prepare_home(home: Path) -> Path:
    """Empty ``home`` for a fresh run: wiped only if it is the demo's own (marker file) or empty."""
    home = home.expanduser().resolve()
    if home.exists():
        if not home.is_dir():
            raise DemoError(f"--home {home} is a file")
        if any(home.iterdir()) and not (home / MARKER).is_file():
            raise DemoError(f"--home {home} is not empty and was not made by glassbox demo; pick another folder")
        shutil.rmtree(home)
    (home / "logs").mkdir(parents=True)
    (home / MARKER).write_text("made by `glassbox demo`; wiped at the start of the next run\n")
    return home


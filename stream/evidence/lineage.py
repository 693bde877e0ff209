"""Lineage facts recorded with every training and monitoring run: code, environment, data, seeds.

Everything here is cheap, local and never raises for a missing fact (a checkout without git, a machine
without a lock file): the fact is then ``None`` and the run still starts.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
>>> _ = p.write_bytes(b"glassbox")
>>> file_digest(p)[:12]
'19f9c9702b8b'
>>> seed_everything(7)["random"]
True
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import platform
import random
import resource
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

# The packages whose versions decide what a run computes.
TRACKED_PACKAGES = (
    "glassbox", "numpy", "pandas", "scikit-learn", "river", "evidently", "mlflow", "shap",
    "faust-streaming", "aiokafka", "pyarrow", "scipy",
)


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file's bytes, read in chunks (works for multi-GB files)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def short_digest(path: str | os.PathLike[str]) -> str:
    """The 16-hex prefix of a file's sha256: what glassbox calls a dataset's digest (it fits MLflow's
    36-character dataset digest column and names the same bytes everywhere)."""
    return file_digest(path)[:16]


def find_repo_root(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest parent directory holding ``.git`` or ``pyproject.toml``, or None."""
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / ".git").exists() or (d / "pyproject.toml").exists():
            return d
    return None


def git_commit(repo: str | os.PathLike[str] | None = None) -> str | None:
    """The checked-out commit (with ``-dirty`` when tracked files changed), or None outside git or before the
    first commit."""
    cwd = str(repo or find_repo_root() or Path.cwd())
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if dirty else sha or None


def lock_digest(lock: str | os.PathLike[str] | None = None) -> str | None:
    """sha256 of ``uv.lock`` (the exact environment), or None when there is no lock file."""
    path = Path(lock) if lock else (find_repo_root() or Path.cwd()) / "uv.lock"
    return file_digest(path) if path.is_file() else None


def package_versions(names: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (missing packages are left out)."""
    out: dict[str, str] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def instance_type() -> str:
    """What the run ran on: ``GLASSBOX_INSTANCE_TYPE`` when set (e.g. a cloud instance type), else
    ``<os>-<arch>-<n>cpu-<mem>GB``."""
    if env := os.environ.get("GLASSBOX_INSTANCE_TYPE"):
        return env
    return f"{platform.system().lower()}-{platform.machine()}-{os.cpu_count()}cpu-{_memory_gb()}GB"


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


def process_metrics() -> dict[str, float]:
    """CPU seconds and peak memory of this process (``resource``, no psutil needed), logged at a run's end
    next to MLflow's sampled ``system/*`` metrics."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "system/process_cpu_seconds": round(ru.ru_utime + ru.ru_stime, 3),
        "system/process_max_rss_mb": round(ru.ru_maxrss / 1024, 1),  # Linux reports KiB
    }


def system_metrics_available() -> bool:
    """MLflow's ``log_system_metrics=True`` samples with psutil; without it MLflow only warns."""
    return importlib.util.find_spec("psutil") is not None


def lineage_tags(*, project: str = "glassbox", env: str | None = None, repo: str | None = None) -> dict[str, str]:
    """The tags every glassbox MLflow run carries (project, env, user, git commit, lock digest, instance)."""
    tags = {
        "project": project,
        "env": env or os.environ.get("GLASSBOX_ENV", "dev"),
        "user": current_user(),
        "mlflow.user": current_user(),
        "instance_type": instance_type(),
        "python": platform.python_version(),
    }
    if commit := git_commit(repo):
        tags["git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit.removesuffix("-dirty")
    if lock := lock_digest(Path(repo) / "uv.lock" if repo else None):
        tags["uv_lock_sha256"] = lock
    return tags


def seed_everything(seed: int) -> dict[str, Any]:
    """Seed ``random``, numpy's legacy global generator, and torch / tensorflow when they are installed.

    Returns which were seeded. ``PYTHONHASHSEED`` is exported for child processes (it cannot change the
    hash seed of the running interpreter). Code should still pass explicit ``np.random.default_rng(seed)``
    generators; this covers libraries that use the global state.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    os.environ["PYTHONHASHSEED"] = str(seed)
    seeded: dict[str, Any] = {"seed": seed, "random": True, "numpy": True, "torch": False, "tensorflow": False}
    if "torch" in sys.modules or importlib.util.find_spec("torch") is not None:
        import torch

        torch.manual_seed(seed)
        seeded["torch"] = True
    if "tensorflow" in sys.modules or importlib.util.find_spec("tensorflow") is not None:
        import tensorflow as tf

        tf.random.set_seed(seed)
        seeded["tensorflow"] = True
    return seeded


@contextlib.contextmanager
def mlflow_store(uri: str) -> Iterator[None]:
    """Point MLflow's process-wide tracking and registry URIs at ``uri`` for the block, then put both back as
    they were (unset stays unset, also in the environment children inherit). ``models:/`` loading and fluent
    runs read these globals; an explicit registry URI also spares MLflow an import probe that can deadlock
    with its system-metrics thread."""
    import mlflow

    env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    tracking = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    registry = mlflow.get_registry_uri() if env["MLFLOW_REGISTRY_URI"] else None
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(tracking)
        mlflow.set_registry_uri(registry)  # None: follow the tracking URI again
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def quiet_store_logs() -> None:
    """No MLflow or alembic INFO lines ("Creating initial MLflow database tables...", "Updating database tables",
    "Context impl SQLiteImpl") on a command's output: warnings and errors still show. MLflow reads
    ``MLFLOW_LOGGING_LEVEL`` when it is imported; the logger levels are set too in case it already is."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    level = logging.getLevelName(os.environ["MLFLOW_LOGGING_LEVEL"].upper())
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(level if isinstance(level, int) else logging.WARNING)

"""What a replay derives from its reference, cached on disk: a second replay against it pays for neither.

- **Profiles** (:class:`ProfileCache`): the profile of a reference file, keyed by the file's bytes (sha256)
  and what shapes the profile (columns by role, task, categorical columns, name, library versions); stored as
  the profile's JSON, which round-trips exactly (same digest).
- **Calibrated limits** (:class:`CalibrationCache`): calibration
  (:meth:`detectors.window_tests.WindowTests.limits`) resamples thousands of null windows for each window size
  a monitor tests (five horizons by default), about a second and a half of CPU, more than the whole replay of a
  small file. The limits are a pure function of :func:`detectors.window_tests.calibration_key` (profile
  digest, the settings that matter, code and library versions) and the window size, so they are stored per
  key in one ``.npz`` file (arrays bit for bit: cached limits are the computed ones).

Both live under the user's cache directory, never in a checkout: ``$GLASSBOX_CACHE_DIR``, else
``$XDG_CACHE_HOME/glassbox``, else ``~/.cache/glassbox`` (an empty ``GLASSBOX_CACHE_DIR`` turns caching off). A
file that cannot be read, or whose stored key or shapes do not match, is ignored with a warning and rewritten.

>>> import tempfile, numpy as np, pandas as pd
>>> from detectors.config import DetectionConfig
>>> from detectors.monitor import ModelMonitor
>>> from detectors.profile import build_profile
>>> from detectors.window_tests import calibration_key, forget_limits
>>> prof = build_profile(pd.DataFrame({"x": np.arange(2000.0)}), prediction=None)
>>> cache, key = CalibrationCache(tempfile.mkdtemp()), calibration_key(prof, DetectionConfig(window=100))
>>> cache.load(key, prof)
0
>>> limits = ModelMonitor(prof, DetectionConfig(window=100)).tests.limits(100)
>>> cache.save(key)
1
>>> forget_limits()
>>> cache.load(key, prof)
1
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from detectors.profile import PROFILE_SCHEMA, CategoricalColumn, NumericColumn, ReferenceProfile
from detectors.window_tests import Limits, known_limits, remember_limits

ENV = "GLASSBOX_CACHE_DIR"
PROFILE_CACHE_VERSION = 1  # bump when build_profile gives another profile for the same inputs
FIELDS = [f for f in Limits.__dataclass_fields__ if f != "kind"]


def default_dir() -> Path | None:
    """Where calibrations are cached (``None``: caching turned off)."""
    env = os.environ.get(ENV)
    if env is not None:
        return Path(env).expanduser() if env.strip() else None
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "glassbox"


class CalibrationCache:
    """Calibrated limits per :func:`~detectors.window_tests.calibration_key`, one file each, in ``directory``."""

    def __init__(self, directory: str | os.PathLike[str] | None):
        self.directory = None if directory is None else Path(directory) / "calibration"
        self._loaded: dict[str, set[int]] = {}

    @classmethod
    def default(cls) -> CalibrationCache:
        return cls(default_dir())

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{key}.npz"

    def load(self, key: str, profile: ReferenceProfile) -> int:
        """Make the stored limits of :func:`~detectors.window_tests.calibration_key` ``key`` (of ``profile``)
        known to the process; how many window sizes."""
        self._loaded[key] = set()
        if self.directory is None or not self._path(key).exists():
            return 0
        path = self._path(key)
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) != key:
                    raise ValueError(f"it holds the limits of key {z['key']}")
                limits = {}
                for i, n in enumerate(z["sizes"].tolist()):
                    lim = Limits(**{f: z[f"{f}_{i}"] for f in FIELDS}, kind=str(z["kinds"][i]))
                    limits[int(n)] = lim
        except Exception as err:  # corrupt, truncated, stale or foreign: calibrate again
            warnings.warn(f"ignoring the calibration cache {path}: {type(err).__name__}: {err}",
                          RuntimeWarning, stacklevel=2)
            return 0
        shapes = _shapes(profile)
        if any(getattr(lim, f).shape != shapes[f] for lim in limits.values() for f in FIELDS):
            warnings.warn(f"ignoring the calibration cache {path}: shapes do not match the profile",
                          RuntimeWarning, stacklevel=2)
            return 0
        remember_limits(key, limits)
        self._loaded[key] = set(limits)
        return len(limits)

    def save(self, key: str) -> int:
        """Store the limits this process knows for ``key`` (a no-op when the file already holds them all); how
        many window sizes the file holds."""
        limits = known_limits(key)
        if self.directory is None or not limits or set(limits) <= self._loaded.get(key, set()):
            return len(self._loaded.get(key, ()))
        sizes = sorted(limits)
        arrays: dict[str, np.ndarray] = {"key": np.array(key), "sizes": np.array(sizes, np.int64),
                                         "kinds": np.array([limits[n].kind for n in sizes])}
        for i, n in enumerate(sizes):
            arrays |= {f"{f}_{i}": np.asarray(getattr(limits[n], f)) for f in FIELDS}
        path = self._path(key)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, path)
        except OSError as err:  # a read-only or full cache directory costs speed, not the replay
            warnings.warn(f"cannot write the calibration cache {path}: {err}", RuntimeWarning, stacklevel=2)
            tmp.unlink(missing_ok=True)
            return 0
        self._loaded[key] = set(sizes)
        return len(sizes)


def _shapes(profile: ReferenceProfile) -> dict[str, tuple[int, ...]]:
    cols = [profile.columns[c] for c in profile.monitored]
    k_num = sum(isinstance(c, NumericColumn) for c in cols)
    k_cat = sum(isinstance(c, CategoricalColumn) for c in cols)
    return {f: ((k_num,) if f.startswith("num") else (k_cat,)) for f in FIELDS}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


class ProfileCache:
    """Reference profiles by the reference file's bytes and the profiling options, one JSON file each."""

    def __init__(self, directory: str | os.PathLike[str] | None):
        self.directory = None if directory is None else Path(directory) / "profiles"

    @classmethod
    def default(cls) -> ProfileCache:
        return cls(default_dir())

    @staticmethod
    def key(reference_digest: str, options: Mapping[str, Any]) -> str:
        """The cache key of a reference file's digest and what else the profile depends on."""
        raw = orjson.dumps({"version": PROFILE_CACHE_VERSION, "schema": PROFILE_SCHEMA, "reference": reference_digest,
                            "options": dict(options), "numpy": np.__version__, "pandas": pd.__version__},
                           option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(raw).hexdigest()[:32]

    def load(self, key: str) -> ReferenceProfile | None:
        if self.directory is None:
            return None
        path = self.directory / f"{key}.json"
        if not path.exists():
            return None
        try:
            return ReferenceProfile.from_json(path.read_bytes())
        except Exception as err:  # corrupt or from another version: profile again
            warnings.warn(f"ignoring the profile cache {path}: {type(err).__name__}: {err}", RuntimeWarning,
                          stacklevel=2)
            return None

    def save(self, key: str, profile: ReferenceProfile) -> None:
        if self.directory is None:
            return
        path = self.directory / f"{key}.json"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(profile.to_json())
            os.replace(tmp, path)
        except OSError as err:
            warnings.warn(f"cannot write the profile cache {path}: {err}", RuntimeWarning, stacklevel=2)
            tmp.unlink(missing_ok=True)

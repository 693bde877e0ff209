"""``glassbox replay`` of a file imports what a replay needs and no more.

River's drift detector only when labels are replayed, and then its own module, not all of ``river.drift``
(which imports River's datasets, scikit-learn and SciPy's stats, ~1.5 s); SciPy's special functions without
``scipy.special``'s ``__init__``; SHAP, MLflow and Evidently never
without ``--mlflow`` / ``--explain``, and no MLflow run by default (``--mlflow`` asks for one): no settings
(pydantic-settings, the worker's Prometheus metrics), no asyncio (``kafka://`` only), no scoring (``--truth``
only). Checked in a fresh interpreter through the real entry point, with the default options.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import synth

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("river", "sklearn", "scipy.stats", "scipy.special", "shap", "mlflow", "evidently", "aiokafka")
NOT_ASKED = ("mlflow", "shap", "evidently", "aiokafka", "asyncio", "pydantic_settings", "prometheus_client",
             "stream.settings", "stream.evidence", "stream.worker", "detectors.scoring")
PROBE = """
import sys, orjson
from stream.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit as stop:
    assert not stop.code, stop.code
heavy = {heavy!r}
print(orjson.dumps(sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy))).decode())
"""


def _imported(tmp_path: Path, labels: bool) -> list[str]:
    ref, ev = synth.frame(5_000, seed=1), synth.frame(6_000, seed=2)
    if not labels:
        ref, ev = ref.drop(columns=["label"]), ev.drop(columns=["label"])
    ref.to_parquet(tmp_path / "ref.parquet")
    ev.to_parquet(tmp_path / "ev.parquet")
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY + NOT_ASKED), "replay", str(tmp_path / "ev.parquet"),
         "--reference", str(tmp_path / "ref.parquet"), "--alerts-out", str(tmp_path / "alerts.jsonl")],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=True)
    return orjson.loads(out.stdout.strip().splitlines()[-1])


def test_file_replay_without_labels_imports_no_river_no_mlflow(tmp_path: Path) -> None:
    heavy = _imported(tmp_path, labels=False)
    # SciPy's special-function ufuncs without scipy.special's __init__ (its array-API layer, ~0.17 s)
    assert "scipy.special._ufuncs" in heavy and "scipy.special" not in heavy, heavy
    heavy = [m for m in heavy if not m.startswith("scipy.special.")]
    assert heavy == [], heavy  # no River, scikit-learn, SciPy stats, nor anything NOT_ASKED


@pytest.mark.slow  # a second interpreter; the probe's own check that imports are seen at all
def test_file_replay_with_labels_imports_river_adwin_only(tmp_path: Path) -> None:
    heavy = _imported(tmp_path, labels=True)
    assert "river.drift.adwin" in heavy  # the check above would pass vacuously if nothing were ever imported
    assert "river.drift" not in heavy and "river.drift.datasets" not in heavy, heavy
    assert "sklearn" not in heavy and "scipy.stats" not in heavy, heavy
    assert not [m for m in heavy if m.split(".")[0] in ("shap", "mlflow", "evidently")], heavy
    assert not [m for m in heavy if any(m == h or m.startswith(h + ".") for h in NOT_ASKED)], heavy

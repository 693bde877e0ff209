"""NannyML's own CBPE on the streams of ``bench_estimation.py``, run in NannyML's own environment.

NannyML is a benchmark-only dependency that cannot join the project's lock (every release requires
``python-dateutil<3``; the lock has 4.0.0), so ``bench_estimation.py`` runs this script through uv in a
throwaway environment and reads its answers as JSON. It imports nothing from glassbox.

Input (argv[1]): a JSON list of jobs ``{"reference": path, "analysis": path, "chunk_size": n}``, parquet files
with columns ``1`` (score), ``prediction`` and ``label``. Output (stdout): a JSON list, per job, of the
estimated accuracy per chunk, its alert flags, the lower threshold and the best time of ``estimate`` (s).

Run by hand: ``uv run --no-project --python 3.11 --with nannyml==0.13.1 --with statsmodels --with pyarrow
python bench/nannyml_cbpe.py jobs.json``
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import nannyml as nml
import pandas as pd

warnings.filterwarnings("ignore", message="The resulting number of chunks is too low")


def run(job: dict, repeats: int) -> dict:
    ref = pd.read_parquet(job["reference"])
    cur = pd.read_parquet(job["analysis"]).drop(columns=["label"])  # estimation without labels
    cbpe = nml.CBPE(y_pred_proba="1", y_pred="prediction", y_true="label", problem_type="classification_binary",
                    metrics=["accuracy"], chunk_size=job["chunk_size"])
    cbpe.fit(ref)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = cbpe.estimate(cur)
        best = min(best, time.perf_counter() - t0)
    df = res.filter(period="analysis").to_df()
    return {"estimate": df[("accuracy", "value")].tolist(), "alert": df[("accuracy", "alert")].tolist(),
            "lower_threshold": float(df[("accuracy", "lower_threshold")].iloc[0]), "seconds": best}


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        jobs = json.load(f)
    print(json.dumps([run(j, j.get("repeats", 1)) for j in jobs]))

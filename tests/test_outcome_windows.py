"""The many-windows-at-once paths of the outcome side give the same floats, to the last bit, as one window at a
time: performance metrics and AUC per outcome window, class codes, CBPE estimates of binary windows, and the
outcome monitor fed in batches of any size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detectors.batch import OutcomeBatch
from detectors.config import DetectionConfig
from detectors.encoding import CategoryIndex
from detectors.estimation_fit import Calibration, binary_estimates, metrics
from detectors.outcomes import OutcomeMonitor
from detectors.performance_metrics import (
    auc_score,
    classification_metrics,
    regression_metrics,
    window_auc,
    window_classification_metrics,
    window_regression_metrics,
)
from detectors.profile import build_profile


@pytest.mark.parametrize("seed", range(6))
def test_window_metrics_are_the_per_window_floats(seed: int) -> None:
    rng = np.random.default_rng(seed)
    w, n = int(rng.integers(1, 9)), int(rng.choice([1, 2, 7, 100, 1000]))
    scores = rng.random((w, n))
    if seed % 2:
        scores = np.round(scores, 1)  # ties: midranks
    scores[rng.random((w, n)) < 0.05] = np.nan
    label = rng.integers(0, 3 if seed == 5 else 2, (w, n))
    pred = np.where(rng.random((w, n)) < 0.8, label, 1 - np.minimum(label, 1))
    pred[rng.random((w, n)) < 0.02] = -1  # a class the reference never saw
    positive = None if seed == 5 else 1
    scored = rng.random(w) < 0.7
    got = window_classification_metrics(pred, label, n_classes=3, positive=positive, scores=scores, scored=scored)
    want = [classification_metrics(pred[i], label[i], n_classes=3, positive=positive,
                                    scores=scores[i] if scored[i] else None) for i in range(w)]
    assert repr(got) == repr(want)
    assert window_auc(scores, label == 1) == [auc_score(scores[i], label[i] == 1) for i in range(w)]
    err = rng.standard_t(3, (w, n)) * 100
    assert window_regression_metrics(err) == [regression_metrics(e) for e in err]


def test_class_codes_by_table_are_the_binary_search_codes() -> None:
    rng = np.random.default_rng(0)
    values = [rng.integers(-2, 12, 500), rng.integers(-2, 12, 500).astype(float), rng.random(50) < 0.5,
              np.r_[np.nan, np.inf, -np.inf, -0.0, 0.5, 1.0, 1e300, 2.0**63]]
    for cats in (["0", "1"], ["1", "0"], ["1", "1.0", "3"], ["0", "x", "7"], ["-1", "0"], ["a", "b"]):
        index = CategoryIndex(cats)
        assert (index._numbers is not None) == (cats[0] not in ("-1", "a"))  # the table where it applies
        for x in values:
            got = index.lookup(x)
            xf = x.astype(np.float64)
            want = index._search(xf), np.isnan(xf)
            assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()


def test_binary_estimates_are_the_per_window_estimates() -> None:
    rng = np.random.default_rng(1)
    nb = 49
    cal = Calibration({"classes": ["0", "1"], "positive": 1, "score_columns": ["1"],
                       "edges": [np.sort(rng.random(nb - 1)).tolist()], "probs": [np.sort(rng.random(nb)).tolist()],
                       "rows": 5000})
    counts = rng.multinomial(1000, rng.dirichlet(np.ones(2 * nb)), size=40)
    for est, c in zip(binary_estimates(cal, counts), counts, strict=True):
        cells = c.reshape(2, nb).astype(np.float64)
        e_pred = cells @ cal.probs[0]
        conf = np.column_stack([cells.sum(axis=1) - e_pred, e_pred])
        per_bin = cells.sum(axis=0)
        hist = np.column_stack([per_bin * cal.probs[0], per_bin - per_bin * cal.probs[0]])
        assert repr(est) == repr(metrics(conf, hist, 1))


def test_outcome_records_do_not_depend_on_batch_sizes() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 4000)
    s = np.clip(y * 0.3 + rng.random(4000) * 0.7, 0, 1)
    ref = pd.DataFrame({"x": rng.normal(size=4000), "prediction": (s > 0.5).astype(int), "label": y, "1": s})
    profile = build_profile(ref, label="label", scores=["1"])
    n = 9000
    label = rng.integers(0, 2, n).astype(float)
    label[rng.random(n) < 0.01] = np.nan  # dropped outcomes
    wrong = rng.random(n) < np.r_[np.full(4000, 0.15), np.full(n - 4000, 0.4)]
    pred = np.where(wrong, 1 - label, label)
    score = np.clip(pred * 0.3 + rng.random(n) * 0.7, 0, 1)
    t = np.arange(n)

    def run(sizes: list[int]) -> tuple[list, list]:
        mon = OutcomeMonitor(profile, DetectionConfig(window=250), alpha=0.001)
        out, pos, i = [], 0, 0
        while pos < n:
            b = slice(pos, min(n, pos + sizes[i % len(sizes)]))
            out += mon.observe(OutcomeBatch(ids=t[b].astype(str).astype(object), timestamps=t[b],
                                            label_timestamps=t[b], prediction=pred[b], label=label[b],
                                            scores={"1": score[b]}, partitions=np.full(b.stop - b.start, -1),
                                            offsets=t[b]))
            pos, i = b.stop, i + 1
        return out, mon.records

    alerts, records = run([n])
    assert {a["monitor"] for a in alerts} == {"concept_drift", "performance"}
    for sizes in ([1, 7, 250, 999], [3000, 17]):
        assert repr(run(sizes)) == repr((alerts, records))

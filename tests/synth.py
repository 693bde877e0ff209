"""Seeded synthetic prediction streams for detection tests and benchmarks.

20 numeric features ``num_0..num_19`` (normal, a few skewed, with their own means and scales) and 5
categorical ``cat_0..cat_4`` (5-6 categories each), ``num_3`` 1% missing. A binary model predicts
``prediction = 1[rule(x) > 0]`` with ``score`` = sigmoid of the rule; the label is the rule's verdict
flipped with probability ``noise`` (so the error rate does not depend on where the inputs lie, and a
pure covariate shift leaves it unchanged). The rule uses ``num_0..num_4`` only.

Scenarios change the stream from row ``at`` on:

- ``none``; ``mean_shift`` (``num_10``, ``num_11`` +0.5 sd); ``cat_double`` (``cat_0`` = "d" from 12% to 24%);
  ``new_category`` (``cat_1`` = "zz_new" in 5% of rows); ``missing`` (``num_3`` missing 1% -> 20%);
- ``concept_flip`` (labels flipped where ``num_0`` > 0.25 sd: error ~3% -> ~43%);
- ``two_changes`` (flip where ``num_0`` > 0.8 sd from ``at``, and also where ``num_1`` > 0.5 sd from ``at2``);
- ``gradual`` (the flip spreads over ``width`` rows from ``at``);
- ``covariate`` (``num_0`` +1 sd, ``num_1`` -0.8 sd, rule unchanged).

Regression streams (:func:`regression_frame`): ``y = rule(x) + N(0, sigma)``, ``prediction = rule(x)``;
``sigma`` is multiplied by ``factor`` from ``at`` (and by ``factor2`` from ``at2``).

>>> df = frame(1000, seed=3)
>>> df.shape, sorted(set(df["prediction"]))
((1000, 28), [0, 1])
"""

from __future__ import annotations

import numpy as np
import pandas as pd

N_NUM, N_CAT = 20, 5
NUM = [f"num_{i}" for i in range(N_NUM)]
CAT = [f"cat_{i}" for i in range(N_CAT)]
FEATURES = NUM + CAT
_CATS = ["a", "b", "c", "d", "e", "f"]
_P = [
    [0.35, 0.25, 0.2, 0.12, 0.08],
    [0.3, 0.3, 0.2, 0.1, 0.05, 0.05],
    [0.5, 0.2, 0.15, 0.1, 0.05],
    [0.2, 0.2, 0.2, 0.2, 0.2],
    [0.4, 0.3, 0.15, 0.1, 0.05],
]
_W = np.array([1.0, -0.8, 0.6, 0.5, -0.4])


def _layout() -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(12345)  # fixed: the same population for every seed
    return g.uniform(-5, 5, N_NUM), g.uniform(0.5, 3.0, N_NUM)


def _numeric(rng: np.random.Generator, n: int) -> np.ndarray:
    mu, sd = _layout()
    z = rng.standard_normal((n, N_NUM))
    z[:, 15:18] = (np.exp(z[:, 15:18] * 0.5) - np.exp(0.125)) / 0.6  # skewed (lognormal) columns
    return mu + sd * z, z


def frame(n: int, seed: int, scenario: str = "none", at: int = 50_000, *, at2: int = 70_000,
          width: int = 5_000, noise: float = 0.03) -> pd.DataFrame:
    """A binary-classification stream (or reference, with ``scenario="none"``) of ``n`` rows."""
    rng = np.random.default_rng(seed)
    rows = np.arange(n)
    after = rows >= at
    x, z = _numeric(rng, n)
    mu, sd = _layout()
    if scenario == "mean_shift":
        for j in (10, 11):
            x[after, j] += 0.5 * sd[j]
    if scenario == "covariate":
        z[after, 0] += 1.0
        z[after, 1] -= 0.8
        x[:, 0] = mu[0] + sd[0] * z[:, 0]
        x[:, 1] = mu[1] + sd[1] * z[:, 1]
    miss = rng.random(n) < np.where(after & (scenario == "missing"), 0.20, 0.01)
    x[miss, 3] = np.nan
    data: dict[str, object] = {c: x[:, j] for j, c in enumerate(NUM)}
    for j, c in enumerate(CAT):
        p = np.array(_P[j])
        codes = rng.choice(len(p), size=n, p=p)
        vals = np.array(_CATS[: len(p)], dtype=object)[codes]
        if scenario == "cat_double" and j == 0:
            q = p.copy()
            q[3] = 2 * p[3]
            others = np.arange(len(p)) != 3
            q[others] *= (1 - q[3]) / p[others].sum()
            alt = np.array(_CATS[: len(p)], dtype=object)[rng.choice(len(p), size=n, p=q)]
            vals = np.where(after, alt, vals)
        if scenario == "new_category" and j == 1:
            new = after & (rng.random(n) < 0.05)
            vals = np.where(new, "zz_new", vals)
        data[c] = vals
    rule = z[:, :5] @ _W
    pred = (rule > 0).astype(np.int64)
    truth = pred.copy()
    if scenario == "concept_flip":
        region = after & (z[:, 0] > 0.25)
        truth[region] = 1 - truth[region]
    elif scenario == "two_changes":
        region = ((rows >= at) & (z[:, 0] > 0.8)) | ((rows >= at2) & (z[:, 1] > 0.5))
        truth[region] = 1 - truth[region]
    elif scenario == "gradual":
        share = np.clip((rows - at) / width, 0.0, 1.0)
        region = (z[:, 0] > 0.25) & (rng.random(n) < share)
        truth[region] = 1 - truth[region]
    flip = rng.random(n) < noise
    label = np.where(flip, 1 - truth, truth)
    data["prediction"] = pred
    data["score"] = 1.0 / (1.0 + np.exp(-3.0 * rule))
    data["label"] = label
    return pd.DataFrame(data)


def regression_frame(n: int, seed: int, at: int = 50_000, factor: float = 1.0, *, at2: int | None = None,
                     factor2: float = 1.0, sigma: float = 0.5) -> pd.DataFrame:
    """A regression stream: the error level changes by ``factor`` at ``at`` (and ``factor2`` at ``at2``)."""
    rng = np.random.default_rng(seed)
    rows = np.arange(n)
    x, z = _numeric(rng, n)
    data: dict[str, object] = {c: x[:, j] for j, c in enumerate(NUM)}
    rule = z[:, :5] @ _W * 2.0
    s = np.where(rows >= at, sigma * factor, sigma)
    if at2 is not None:
        s = np.where(rows >= at2, sigma * factor2, s)
    data["prediction"] = rule
    data["label"] = rule + rng.standard_normal(n) * s
    return pd.DataFrame(data)

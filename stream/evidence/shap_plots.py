"""SHAP artifacts of a window or a reference: summary bar plot, beeswarm plot (PNG) and the values table.

Drawn with matplotlib's object API on the Agg canvas: headless, no pyplot, no global backend switch, so it
is safe in a worker thread. The plots follow shap's layout (features by mean |SHAP|, largest on top; the
beeswarm coloured by the feature's value, low blue to high red). The table has one row per explained row
and the features as columns (CSV or parquet, by the file's suffix).

>>> import numpy as np, pandas as pd, tempfile, pathlib
>>> from detectors.attribution import Attribution
>>> v = np.random.default_rng(0).normal(size=(50, 3, 1))
>>> att = Attribution(v, np.zeros(1), ["a", "b", "c"], ["y"], "prediction", "tree",
...                   pd.DataFrame(np.random.default_rng(1).normal(size=(50, 3)), columns=["a", "b", "c"]))
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> sorted(p.name for p in write_artifacts(att, d).values())
['shap_beeswarm.png', 'shap_summary_bar.png', 'shap_values.csv']
>>> open(d / "shap_beeswarm.png", "rb").read(8) == PNG_SIGNATURE
True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LinearSegmentedColormap, Normalize
from matplotlib.figure import Figure

from detectors.attribution import Attribution

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_BLUE, _RED = "#008bfb", "#ff0051"  # shap's colours
_CMAP = LinearSegmentedColormap.from_list("shap_red_blue", [_BLUE, "#7f4ba6", _RED])
_METADATA = {"Software": None}  # no version string: identical inputs give identical files


def _figure(n_features: int, width: float = 7.5) -> Figure:
    fig = Figure(figsize=(width, max(2.2, 0.45 * n_features + 1.3)), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _order(att: Attribution, max_features: int) -> np.ndarray:
    return np.argsort(-att.mean_abs(), kind="stable")[:max_features]


def summary_bar_png(att: Attribution, path: str | os.PathLike[str], *, max_features: int = 20,
                    title: str | None = None) -> Path:
    """Mean |SHAP| per feature, largest on top; stacked per class for models with more than two outputs."""
    order = _order(att, max_features)
    fig = _figure(len(order))
    ax = fig.add_subplot()
    y = np.arange(len(order))[::-1]
    names = [att.features[i] for i in order]
    per_out = att.mean_abs_per_output()[:, order]  # (outputs, shown)
    if len(att.outputs) > 2:
        left = np.zeros(len(order))
        colours = _CMAP(np.linspace(0, 1, len(att.outputs)))
        for o, name in enumerate(att.outputs):
            ax.barh(y, per_out[o] / len(att.outputs), left=left, color=colours[o], label=f"class {name}")
            left += per_out[o] / len(att.outputs)
        ax.legend(loc="lower right", frameon=False, fontsize=8)
    else:
        vals = att.mean_abs()[order]
        ax.barh(y, vals, color=_RED)
        for yi, v in zip(y, vals, strict=True):
            ax.text(v, yi, f" {v:.3g}", va="center", fontsize=8, color=_RED)
    ax.set_yticks(y, names)
    ax.set_xlabel(f"mean |SHAP value| ({att.output_space})")
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(title or f"SHAP feature importance ({len(att.values)} rows)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _swarm_offsets(values: np.ndarray, nbins: int = 100) -> np.ndarray:
    """Vertical offsets in [-0.4, 0.4] that spread points sharing an x bin (deterministic)."""
    n = len(values)
    if n == 0:
        return values
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    bins = np.zeros(n, np.int64) if hi <= lo else np.round((values - lo) / (hi - lo) * nbins).astype(np.int64)
    order = np.lexsort((np.arange(n), bins))
    rank = np.empty(n, np.int64)
    sorted_bins = bins[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_bins)) + 1]
    within = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    rank[order] = within
    layer = (rank + 1) // 2 * np.where(rank % 2 == 1, 1, -1)  # 0, +1, -1, +2, -2, ...
    peak = max(int(np.abs(layer).max()), 1)
    return 0.4 * layer / peak


def beeswarm_png(att: Attribution, path: str | os.PathLike[str], *, output: int | str | None = None,
                 max_features: int = 20, title: str | None = None) -> Path:
    """SHAP value of each row per feature (one output; default the last, the positive class), coloured by
    the feature's value (between its 5th and 95th percentile; non-numeric and missing values grey)."""
    o = att.output_index(output)
    order = _order(att, max_features)
    fig = _figure(len(order), width=8.0)
    ax = fig.add_subplot()
    ax.axvline(0.0, color="#999999", lw=0.8, zorder=0)
    for k, i in enumerate(order):
        y0 = len(order) - 1 - k
        shap_vals = att.values[:, i, o]
        raw = pd.to_numeric(att.data.iloc[:, i], errors="coerce").to_numpy(np.float64) if len(att.data) else None
        ys = y0 + _swarm_offsets(shap_vals)
        if raw is None or not np.isfinite(raw).any():
            ax.scatter(shap_vals, ys, s=10, color="#777777", lw=0, alpha=0.8, rasterized=False)
            continue
        ok = np.isfinite(raw)
        vmin, vmax = np.nanpercentile(raw, [5, 95])
        if vmax <= vmin:
            vmin, vmax = float(np.nanmin(raw)), float(np.nanmax(raw)) + 1e-12
        ax.scatter(shap_vals[~ok], ys[~ok], s=10, color="#777777", lw=0, alpha=0.8)
        ax.scatter(shap_vals[ok], ys[ok], s=10, c=np.clip(raw[ok], vmin, vmax), cmap=_CMAP,
                   norm=Normalize(vmin, vmax), lw=0, alpha=0.85)
    ax.set_yticks(np.arange(len(order))[::-1], [att.features[i] for i in order])
    ax.set_ylim(-0.7, len(order) - 0.3)
    ax.set_xlabel(f"SHAP value ({att.output_space} of {att.outputs[o]})")
    ax.spines[["top", "right", "left"]].set_visible(False)
    sm = _scalar_mappable()
    cb = fig.colorbar(sm, ax=ax, ticks=[0, 1], aspect=40, pad=0.02)
    cb.ax.set_yticklabels(["low", "high"])
    cb.set_label("feature value", fontsize=9)
    ax.set_title(title or f"SHAP values ({len(att.values)} rows)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _scalar_mappable() -> Any:
    from matplotlib.cm import ScalarMappable

    sm = ScalarMappable(norm=Normalize(0, 1), cmap=_CMAP)
    sm.set_array([])
    return sm


def write_table(att: Attribution, path: str | os.PathLike[str], *, output: int | str | None = None) -> Path:
    """The SHAP values of one output: one row per explained row, the features as columns (.csv or .parquet)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    table = att.table(output)
    if p.suffix.lower() == ".parquet":
        table.to_parquet(p, index=False)
    else:
        table.to_csv(p, index=False)
    return p


def write_artifacts(att: Attribution, folder: str | os.PathLike[str], *, prefix: str = "shap",
                    output: int | str | None = None, table_format: str = "csv",
                    title: str | None = None) -> dict[str, Path]:
    """Bar plot, beeswarm and table into ``folder``; returns their paths by kind (bar, beeswarm, table)."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    return {
        "bar": summary_bar_png(att, d / f"{prefix}_summary_bar.png", title=title),
        "beeswarm": beeswarm_png(att, d / f"{prefix}_beeswarm.png", output=output, title=title),
        "table": write_table(att, d / f"{prefix}_values.{table_format}", output=output),
    }


def artifact_bytes(att: Attribution, *, prefix: str = "shap", output: int | str | None = None,
                   table_format: str = "csv", title: str | None = None) -> dict[str, bytes]:
    """:func:`write_artifacts` as file name -> bytes (for a process that renders but does not upload)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="glassbox-shap-") as tmp:
        paths = write_artifacts(att, tmp, prefix=prefix, output=output, table_format=table_format, title=title)
        return {p.name: p.read_bytes() for p in paths.values()}


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, format="png", metadata=_METADATA)
    return p

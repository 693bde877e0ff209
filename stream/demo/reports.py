"""The demo's model and reports: train and register the reference model, find or render the Evidently
report of each kind of alert. MLflow and Evidently are chatty: their output goes to ``<home>/logs``."""

from __future__ import annotations

import contextlib
import urllib.parse
from pathlib import Path
from typing import Any

from stream.demo.home import MODEL


@contextlib.contextmanager
def quiet_into(log: Path) -> Any:
    """Send stdout, stderr and warnings of the block (MLflow is chatty) to ``log``."""
    import warnings

    with open(log, "a", encoding="utf-8") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def train_model(home: Path, tracking_uri: str) -> tuple[Any, Any, Any]:
    """Train, gate and register ``churn@champion`` with the example's code; returns (result, reference, model)."""
    from stream.demo import training as ex

    with quiet_into(home / "logs" / "train.log"):
        import mlflow

        result = ex.train_and_register(tracking_uri, MODEL, seed=42, alias="champion",
                                       artifact_root=str(home / "mlartifacts"), env="demo")
        mlflow.set_tracking_uri(tracking_uri)
        from stream.evidence.reference import load_reference

        ref = load_reference(f"models:/{MODEL}@champion", tracking_uri=tracking_uri, load_model=True)
        model = ref.model.get_raw_model()
    return result, ref, model


def local_path(link: str | None) -> Path | None:
    """A report link as a local file path (file URIs and absolute paths), or None."""
    if not link:
        return None
    if link.startswith("file:"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(link).path))
    p = Path(link)
    return p if p.is_absolute() else None


def own_report(home: Path, stream: Any, reference: Any, window_index: int, end_ms: int | None) -> Path:
    """An Evidently report of one window against the reference (HTML under ``<home>/reports``, and added to
    the Evidently workspace), for when the worker wrote none."""
    from stream.evidence.snapshots import SnapshotJob, render_snapshot

    w = 1000
    cur = stream.frame.iloc[window_index * w:(window_index + 1) * w]
    feats = list(stream.features)
    current = cur[feats + ["prediction", "label"]].reset_index(drop=True)
    ref = reference.data.rename(columns={"churn": "label"})[feats + ["prediction", "label"]]
    with quiet_into(home / "logs" / "reports.log"):
        out = render_snapshot(SnapshotJob(
            model=MODEL, window_index=window_index, window_end_ms=end_ms, current=current, reference=ref,
            features=feats, out_dir=str(home / "reports" / MODEL), label="label", task="binary",
            categorical=list(stream.categorical), trigger="alert", sample_size=1000,
            workspace=str(home / "evidently"), tags=["demo"]))
    return Path(out.html)



def collect_reports(home: Path, stream: Any, reference: Any, alerts: list[dict[str, Any]]) -> dict[str, str]:
    """monitor -> the Evidently report of the window where it first fired, from the alerts' links (only when
    the link is that window's report, not a later one); the data-drift report is rendered here if the worker
    wrote none."""
    reports: dict[str, str] = {}
    seen: set[str] = set()
    for a in alerts:
        if a["status"] != "firing" or a["monitor"] in seen:
            continue
        seen.add(a["monitor"])
        p = local_path((a.get("links") or {}).get("report"))
        index = int((a.get("window") or {}).get("index", -1))
        if p is not None and p.is_file() and p.stem == f"w{index:06d}":
            reports[a["monitor"]] = str(p)
    first = next((a for a in alerts if a["monitor"] == "data_drift" and a["status"] == "firing"), None)
    if "data_drift" not in reports and first is not None:
        window = first.get("window") or {}
        index = int(window.get("index", stream.first_change_row // 1000))
        reports["data_drift"] = str(own_report(home, stream, reference, index, window.get("end")))
    return reports


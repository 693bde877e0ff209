"""The model's reference in MLflow: attach it to a registered model version, load it in the monitor.

A reference is the data a model is compared with in production (usually its held-out evaluation data with
the model's predictions and, when known, the labels), the profile the detection core computed from it, and
the model itself. ``log_reference`` attaches one to an existing model version, in the version's source run:

- ``reference/data.parquet``: the data (artifact);
- ``reference/profile.json``: ``detectors.profile.build_profile(...)`` of it;
- ``reference/reference.json``: name, digest, columns, task (what the monitor needs before reading the rest);
- ``reference/attributions.json``: SHAP of the registered model on a seeded sample of the data
  (:func:`detectors.attribution.reference_attributions`: mean |SHAP| per feature and per class, per-row |SHAP|
  for calibration, the model's own ``feature_importances_`` / |coef|); left out, with a warning and
  ``ReferenceInfo.attributions = "unavailable: ..."``, when the model cannot be loaded or explained;
- an MLflow dataset (``mlflow.data.from_pandas``) logged as a run input with context ``reference`` and the
  file's digest (the 16-hex prefix of its sha256, see :func:`stream.evidence.lineage.short_digest`);
- model version tags ``glassbox.reference.*`` pointing at all of it.

``load_reference("models:/NAME/VERSION" | "models:/NAME@alias" | "path/to/ref.parquet")`` returns a
:class:`Reference` (data, profile, model, lineage facts), cached per model version; a missing or incomplete
reference raises :class:`ReferenceNotFound` naming every missing part.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from stream.evidence import lineage
from stream.evidence.reference_base import (
    ATTRIBUTIONS_FILE,
    DATA_FILE,
    FIX_HINT,
    META_FILE,
    PROFILE_FILE,
    REFERENCE_DIR,
    TAG_PREFIX,
    Reference,
    ReferenceInfo,
    ReferenceNotFound,
    build_reference_profile,
    is_model_uri,
    profile_from_json,
    read_data,
    registry_client,
    resolve_model_version,
)

log = logging.getLogger("glassbox.reference")

__all__ = ["Reference", "ReferenceCache", "ReferenceInfo", "ReferenceNotFound", "default_cache", "is_model_uri",
           "load_reference", "load_reference_file", "log_reference", "resolve_model_version"]


# --------------------------------------------------------------------------------------------------- logging
def log_reference(
    model_uri: str,
    data: pd.DataFrame | str | os.PathLike[str],
    *,
    tracking_uri: str | None = None,
    targets: str | None = None,
    prediction_col: str = "prediction",
    name: str | None = None,
    categorical: Sequence[str] | None = None,
    features: Sequence[str] | None = None,
    scores: Sequence[str] | None = None,
    task: str | None = None,
    attributions: bool = True,
    seed: int = 42,
    attribution_rows: int = 500,
) -> ReferenceInfo:
    """Attach reference data (a DataFrame or a parquet/CSV file) to the model version ``model_uri`` names.

    The data must hold the model's predictions in ``prediction_col`` and, when ``targets`` is given, the
    labels; ``scores`` names class-probability columns. Every other column is a feature unless ``features``
    says otherwise. With ``attributions``, the version's model is loaded and SHAP runs on at most
    ``attribution_rows`` rows (chosen with ``seed``); the summary goes to ``attributions.json``. Returns the
    lineage facts; raises ``ValueError`` for missing columns.
    """
    import mlflow.data
    from mlflow.entities import DatasetInput, InputTag, RunTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    client = registry_client(tracking_uri)
    mv = resolve_model_version(client, model_uri)
    df = data.copy() if isinstance(data, pd.DataFrame) else read_data(data)
    missing = [c for c in (prediction_col, targets, *(scores or ())) if c is not None and c not in df.columns]
    if missing:
        raise ValueError(f"reference data lacks column(s) {missing}; it has {list(df.columns)}")
    run_id = mv.run_id or _reference_run(client, mv)
    ref_name = name or f"{mv.name}-v{mv.version}-reference"

    tmp = Path(tempfile.mkdtemp(prefix="glassbox-ref-"))
    try:
        data_path = tmp / DATA_FILE
        df.to_parquet(data_path, index=False)
        sha = lineage.file_digest(data_path)
        digest = sha[:16]
        profile = build_reference_profile(df, prediction=prediction_col, label=targets, categorical=categorical,
                                 features=features, task=task, scores=scores, name=ref_name)
        (tmp / PROFILE_FILE).write_text(profile.to_json())
        files = [DATA_FILE, PROFILE_FILE, META_FILE]
        note = None
        if attributions:
            record, note = _attributions_at_log_time(client, mv, df, list(profile.features), seed=seed,
                                                     max_rows=attribution_rows)
            if record is not None:
                record["reference_digest"] = digest  # a stale file of other data is never read back
                (tmp / ATTRIBUTIONS_FILE).write_text(json.dumps(record, sort_keys=True))
                files.append(ATTRIBUTIONS_FILE)
        info = ReferenceInfo(
            name=ref_name, digest=digest, file_sha256=sha, rows=len(df), columns=[str(c) for c in df.columns],
            prediction=prediction_col, label=targets, task=getattr(profile, "task", task),
            model_name=mv.name, model_version=str(mv.version), run_id=run_id, uri=f"models:/{mv.name}/{mv.version}",
            attributions=note,
        )
        (tmp / META_FILE).write_text(json.dumps(info.to_dict(), indent=2, sort_keys=True))
        for f in files:
            client.log_artifact(run_id, str(tmp / f), REFERENCE_DIR)
        run = client.get_run(run_id)
        source = f"{run.info.artifact_uri}/{REFERENCE_DIR}/{DATA_FILE}"
        with warnings.catch_warnings():  # "source can be interpreted in multiple ways": both are artifacts
            warnings.simplefilter("ignore", UserWarning)
            ds = mlflow.data.from_pandas(df, source=source, targets=targets, name=ref_name, digest=digest,
                                         predictions=prediction_col)
        client.log_inputs(run_id, datasets=[DatasetInput(
            dataset=ds._to_mlflow_entity(), tags=[InputTag(key=MLFLOW_DATASET_CONTEXT, value="reference")])])
        client.log_batch(run_id, tags=[RunTag(f"{TAG_PREFIX}dataset", ref_name),
                                       RunTag(f"{TAG_PREFIX}digest", digest)])
        for key, value in {"run_id": run_id, "path": REFERENCE_DIR, "dataset": ref_name, "digest": digest,
                           "file_sha256": sha, "rows": str(len(df)), "prediction": prediction_col,
                           "label": targets or "", "attributions": note or ""}.items():
            client.set_model_version_tag(mv.name, mv.version, f"{TAG_PREFIX}{key}", value)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    default_cache.forget(tracking_uri, mv.name, str(mv.version))
    return info


def _attributions_at_log_time(client: Any, mv: Any, df: pd.DataFrame, features: list[str], *, seed: int,
                              max_rows: int) -> tuple[dict[str, Any] | None, str]:
    """SHAP of the version's model on a bounded sample of the reference: ``(record, note)``; ``(None,
    "unavailable: <why>")`` with a warning when the model cannot be loaded or explained."""
    import time

    where = f"models:/{mv.name}/{mv.version}"
    t0 = time.perf_counter()
    try:
        import mlflow.pyfunc

        from detectors.attribution import reference_attributions, unwrap_model

        with lineage.mlflow_store(client.tracking_uri), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = unwrap_model(mlflow.pyfunc.load_model(where))
            record = reference_attributions(model, df, features, seed=seed, max_rows=max_rows)
    except Exception as err:  # noqa: BLE001 - any model that cannot be explained: log the reference without
        why = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
        log.warning("%s: reference logged without attributions: the model cannot be explained (%s)", where, why)
        return None, f"unavailable: {why}"
    log.info("%s: reference attributions (%s explainer, %d rows) in %.2f s", where, record["explainer"],
             record["rows"], time.perf_counter() - t0)
    return record, str(record["explainer"])


def _reference_run(client: Any, mv: Any) -> str:
    """A run to hold the reference when the model version has no source run (registered from elsewhere)."""
    from stream.evidence.monitoring_run import ensure_experiment

    exp_id = ensure_experiment(client, "glassbox-references")
    run = client.create_run(exp_id, run_name=f"reference-{mv.name}-v{mv.version}",
                            tags=lineage.lineage_tags())
    client.set_terminated(run.info.run_id)
    return run.info.run_id


# --------------------------------------------------------------------------------------------------- loading
class ReferenceCache:
    """Loaded references keyed by (tracking URI, model name, version): an alias resolves to a version first,
    so moving the alias loads the new version and the old stays cached."""

    def __init__(self) -> None:
        self._items: dict[tuple[str | None, str, str], Reference] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str | None, str, str]) -> Reference | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: tuple[str | None, str, str], ref: Reference) -> None:
        with self._lock:
            self._items[key] = ref

    def forget(self, tracking_uri: str | None, name: str, version: str) -> None:
        with self._lock:
            self._items.pop((tracking_uri, name, version), None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


default_cache = ReferenceCache()


def load_reference(
    uri: str | os.PathLike[str],
    *,
    tracking_uri: str | None = None,
    load_model: bool = True,
    cache: ReferenceCache | None = default_cache,
    prediction: str = "prediction",
    label: str | None = None,
) -> Reference:
    """Load a reference from the registry (``models:/NAME/VERSION``, ``models:/NAME@alias``) or a file.

    For files, ``prediction`` / ``label`` name the columns and a sidecar ``<file>.profile.json`` is used when
    present (else the profile is built). Raises :class:`ReferenceNotFound` naming what is missing.
    """
    if not is_model_uri(uri):
        return load_reference_file(uri, prediction=prediction, label=label)
    client = registry_client(tracking_uri)
    mv = resolve_model_version(client, str(uri))
    key = (tracking_uri, mv.name, str(mv.version))
    if cache is not None and (hit := cache.get(key)) is not None and (hit.model is not None or not load_model):
        return hit
    ref = _load_registered(client, mv, str(uri), load_model=load_model)
    if cache is not None:
        cache.put(key, ref)
    return ref


def _load_registered(client: Any, mv: Any, uri: str, *, load_model: bool) -> Reference:
    import mlflow.artifacts

    tags = dict(mv.tags or {})
    run_id = tags.get(f"{TAG_PREFIX}run_id") or mv.run_id
    folder = tags.get(f"{TAG_PREFIX}path", REFERENCE_DIR)
    where = f"models:/{mv.name}/{mv.version}" + (f" (from {uri})" if uri != f"models:/{mv.name}/{mv.version}" else "")
    hint = FIX_HINT.format(name=mv.name, version=mv.version)
    if not run_id:
        raise ReferenceNotFound(f"{where}: no reference: the version has no source run and no "
                                f"{TAG_PREFIX}run_id tag; {hint}")
    present = {Path(f.path).name for f in client.list_artifacts(run_id, folder)}
    missing = [f"{label} ({folder}/{f})" for f, label in
               ((DATA_FILE, "reference data"), (PROFILE_FILE, "reference profile"), (META_FILE, "reference metadata"))
               if f not in present]
    model = None
    if load_model:
        import mlflow.pyfunc

        try:
            # models:/ URIs resolve against the process-wide URIs: point them at this client's store
            with lineage.mlflow_store(client.tracking_uri):
                model = mlflow.pyfunc.load_model(f"models:/{mv.name}/{mv.version}")
        except Exception as err:  # noqa: BLE001 - any failure means the model part is missing
            missing.append(f"model ({type(err).__name__}: {str(err).splitlines()[0][:200]})")
    if missing:
        state = "no reference" if len(missing) >= 3 else "incomplete reference"
        raise ReferenceNotFound(f"{where}: {state} in run {run_id}: missing {', '.join(missing)}; {hint}")
    tmp = Path(tempfile.mkdtemp(prefix="glassbox-ref-"))
    try:
        local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=folder, dst_path=str(tmp),
                                                         tracking_uri=client.tracking_uri))
        meta = json.loads((local / META_FILE).read_text())
        sha = lineage.file_digest(local / DATA_FILE)
        if sha != meta["file_sha256"]:
            raise ReferenceNotFound(f"{where}: reference data digest mismatch in run {run_id}: "
                                    f"{folder}/{DATA_FILE} has sha256 {sha[:16]}, metadata says {meta['digest']}")
        data = pd.read_parquet(local / DATA_FILE)
        profile = profile_from_json((local / PROFILE_FILE).read_text())
        extras: dict[str, Any] = {}
        if (local / ATTRIBUTIONS_FILE).is_file():  # optional: absent for older or unexplainable models
            try:
                record = json.loads((local / ATTRIBUTIONS_FILE).read_text())
            except ValueError as err:
                log.warning("%s: ignoring unreadable %s/%s: %s", where, folder, ATTRIBUTIONS_FILE, err)
            else:
                if record.get("reference_digest") == meta["digest"]:
                    extras["attributions"] = record
                else:  # left over from reference data logged before the current one
                    log.warning("%s: ignoring %s/%s: it explains other reference data (digest %s, not %s)",
                                where, folder, ATTRIBUTIONS_FILE, record.get("reference_digest"), meta["digest"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    meta.update(model_name=mv.name, model_version=str(mv.version), run_id=run_id, uri=uri)
    info = ReferenceInfo(**{k: meta.get(k) for k in ReferenceInfo.__dataclass_fields__})
    return Reference(data=data, profile=profile, info=info, model=model, extras=extras)


def load_reference_file(path: str | os.PathLike[str], *, prediction: str = "prediction",
                        label: str | None = None, name: str | None = None) -> Reference:
    """A reference from a data file (parquet, CSV, JSON lines), as replay uses; no model."""
    p = Path(path)
    if not p.is_file():
        raise ReferenceNotFound(f"reference file {p}: missing reference data (no such file)")
    data = read_data(p)
    sidecar = p.with_name(p.name + ".profile.json")
    pred = prediction if prediction in data.columns else None
    lab = label if label is not None and label in data.columns else None
    if label is not None and lab is None:
        raise ReferenceNotFound(f"reference file {p}: missing label column {label!r}")
    profile = (profile_from_json(sidecar.read_text()) if sidecar.is_file()
               else build_reference_profile(data, prediction=pred, label=lab))
    sha = lineage.file_digest(p)
    info = ReferenceInfo(name=name or p.stem, digest=sha[:16], file_sha256=sha, rows=len(data),
                         columns=[str(c) for c in data.columns], prediction=pred, label=lab,
                         task=getattr(profile, "task", None), uri=str(p.resolve()))
    return Reference(data=data, profile=profile, info=info)


def load_reference_for(reference: str, settings: Any) -> Any:
    """A :class:`Reference` (data, profile, lineage) for a models:/ URI or a table file.
    A file's ``label`` column, when it has one, is the label, as in ``glassbox replay``."""
    if is_model_uri(reference):
        return load_reference(reference, tracking_uri=settings.mlflow.tracking_uri, load_model=False)
    try:
        return load_reference_file(reference, label="label")
    except ReferenceNotFound:
        return load_reference_file(reference)

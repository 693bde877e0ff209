"""What a reference is and where it lives: its types (:class:`Reference`, :class:`ReferenceInfo`), the layout of
its artifacts, ``models:/`` URIs resolved in the registry, and its data and profile read from files.
:mod:`stream.evidence.reference` logs and loads references on top of this.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from stream.errors import UserError

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

REFERENCE_DIR = "reference"
DATA_FILE = "data.parquet"
PROFILE_FILE = "profile.json"
META_FILE = "reference.json"
ATTRIBUTIONS_FILE = "attributions.json"
TAG_PREFIX = "glassbox.reference."
FIX_HINT = "attach one with: glassbox reference log --model-uri models:/{name}/{version} --data REF.parquet"

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/@]+)|@(?P<alias>[^/@]+))$")


class ReferenceNotFound(UserError, LookupError):
    """The reference cannot be loaded; the message names the model version and every missing part."""


@dataclass(frozen=True)
class ReferenceInfo:
    """Lineage facts of a reference (what alerts and monitoring runs carry)."""

    name: str
    digest: str  # 16-hex prefix of the data file's sha256 (= the MLflow dataset digest)
    file_sha256: str
    rows: int
    columns: list[str]
    prediction: str | None
    label: str | None
    task: str | None
    model_name: str | None = None
    model_version: str | None = None
    run_id: str | None = None
    uri: str | None = None  # what it was loaded from
    # the stored attributions.json's explainer ("tree" | "permutation"), "unavailable: <why>", or None (not tried)
    attributions: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Reference:
    """A loaded reference: data, profile (``detectors.profile.ReferenceProfile``), model (pyfunc or None)."""

    data: pd.DataFrame
    profile: Any
    info: ReferenceInfo
    model: Any = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        return list(getattr(self.profile, "features", None) or [])

    @property
    def task(self) -> str | None:
        return getattr(self.profile, "task", None) or self.info.task


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME/VERSION`` -> (name, version, None); ``models:/NAME@alias`` -> (name, None, alias).

    >>> parse_model_uri("models:/churn@champion"), parse_model_uri("models:/churn/3")
    (('churn', None, 'champion'), ('churn', '3', None))
    """
    m = _MODELS_URI.match(uri.strip())
    if not m:
        raise ValueError(f"not a registered model URI: {uri!r} (expected models:/NAME/VERSION or models:/NAME@alias)")
    return m["name"], m["version"], m["alias"]


def is_model_uri(uri: str | os.PathLike[str]) -> bool:
    """Whether ``uri`` names a registered model (``models:/...``) rather than a file."""
    return str(uri).startswith("models:/")


def registry_client(tracking_uri: str | None) -> Any:
    """An ``MlflowClient`` of ``tracking_uri`` (None: MLflow's default), without the store's set-up INFO lines."""
    from mlflow import MlflowClient

    from stream.evidence.lineage import quiet_store_logs

    quiet_store_logs()

    return MlflowClient(tracking_uri=tracking_uri)


def resolve_model_version(client: Any, uri: str) -> Any:
    """The ``ModelVersion`` a models:/ URI names (aliases and ``latest`` resolved)."""
    from mlflow.exceptions import MlflowException

    name, version, alias = parse_model_uri(uri)
    try:
        if alias is not None:
            return client.get_model_version_by_alias(name, alias)
        if version == "latest":
            versions = client.search_model_versions(f"name='{name}'")
            if not versions:
                raise ReferenceNotFound(f"{uri}: registered model {name!r} has no versions")
            return max(versions, key=lambda v: int(v.version))
        return client.get_model_version(name, version)
    except MlflowException as err:
        what = f"alias {alias!r} of registered model {name!r}" if alias else f"version {version} of {name!r}"
        raise ReferenceNotFound(f"{uri}: no {what} in the MLflow registry at {client.tracking_uri} "
                                f"({err.error_code})") from None


def read_data(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A reference table from parquet, CSV or JSON lines (by suffix)."""
    p = Path(path)
    if p.suffix.lower() in (".csv", ".txt"):
        return pd.read_csv(p)
    if p.suffix.lower() in (".jsonl", ".ndjson"):
        return pd.read_json(p, lines=True)
    return pd.read_parquet(p)


def build_reference_profile(df: pd.DataFrame, *, prediction: str | None, label: str | None,
                            categorical: Sequence[str] | None = None, features: Sequence[str] | None = None,
                            task: str | None = None, scores: Sequence[str] | None = None,
                            name: str | None = None) -> Any:
    """``detectors.profile.build_profile`` of ``df``, passing only the roles that are given."""
    from detectors.profile import build_profile

    kwargs: dict[str, Any] = {"label": label, "task": task, "name": name, "scores": list(scores or [])}
    if prediction is not None:
        kwargs["prediction"] = prediction
    if categorical is not None:
        kwargs["categorical"] = list(categorical)
    if features is not None:
        kwargs["features"] = list(features)
    return build_profile(df, **kwargs)


def profile_from_json(text: str) -> Any:
    """A ``detectors.profile.ReferenceProfile`` from its JSON."""
    from detectors.profile import ReferenceProfile

    return ReferenceProfile.from_json(text)

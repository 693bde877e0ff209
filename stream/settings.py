"""One settings object for the whole product, read from ``glassbox.toml`` and ``GLASSBOX_*`` variables.

Precedence: keyword arguments > environment (``GLASSBOX_KAFKA__BOOTSTRAP=host:9092``; nested keys with
``__``) > the TOML file (``GLASSBOX_CONFIG`` or ``./glassbox.toml``) > defaults. The defaults need nothing
installed: an embedded broker, MLflow on sqlite and artifacts under ``.glassbox/``.

>>> s = Settings(kafka={"topic_prefix": "t."})
>>> s.topic("alerts"), s.kafka.embedded
('t.alerts', True)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from detectors.attribution_config import AttributionConfig
from detectors.config import DetectionConfig
from stream.alerting.config import AlertingConfig
from stream.errors import UserError
from stream.kafka.config import KafkaConfig
from stream.worker.health import PipelineHealthConfig


class WorkerConfig(BaseModel):
    """The Faust worker. Timeouts default to what joins a group quickly on both Tansu and Apache Kafka."""

    model_config = ConfigDict(extra="forbid")

    app_id: str = "glassbox-monitor"
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=0, le=65535)
    session_timeout_s: float = Field(6.0, gt=0)
    rebalance_timeout_s: float = Field(4.0, gt=0)
    heartbeat_interval_s: float = Field(1.0, gt=0)
    batch_max: int = Field(1000, ge=1, description="messages taken per agent step")
    batch_wait_s: float = Field(0.05, ge=0, description="longest wait to fill a step")
    fetch_max_wait_ms: int = Field(50, ge=1, le=1500, description="longest a fetch waits on the broker for data")
    label_ttl_s: float = Field(7 * 24 * 3600, gt=0, description="forget unlabeled predictions after this")
    dedup_horizon: int = Field(2000, ge=0, description="recent prediction ids per model kept to drop duplicates")
    state_interval_s: float = Field(0.5, gt=0, description="publish model state at most this often; input is "
                                    "acknowledged once the state covering it is out")
    max_discovered_models: int = Field(1000, ge=1, description="models counted in discovery mode (no models set)")
    audit: bool = Field(False, description="publish the ids each step processed to the audit topic")
    models: dict[str, str] = Field(
        default_factory=dict,
        description="model name -> reference (models:/NAME@alias, models:/NAME/VERSION or a file)",
    )
    sharded_models: list[str] = Field(
        default_factory=list,
        description="models keyed by prediction_id and spread over every partition: each worker folds its "
        "partitions into partial windows, a combiner closes them (needs detection.window_ms; docs/scaling.md)",
    )
    allowed_lateness_s: float = Field(
        30.0, gt=0, description="sharded models: a window a partition's events ended closes this long (wall time) "
        "after its first partial even if another partition has not reported past it (an idle partition)",
    )


class MlflowConfig(BaseModel):
    """Where references are loaded from and monitoring runs go. Unset paths live under ``home``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="record each worker session as an MLflow run")
    tracking_uri: str | None = Field(None, description="default: sqlite:///<home>/mlflow.db")
    artifact_root: str | None = Field(None, description="default: <home>/mlartifacts")
    experiment: str = "glassbox-monitoring"
    ui_url: str | None = Field(None, description="MLflow UI base URL for alert links (else file links)")
    window_log_duty: float = Field(
        0.1, gt=0, le=1,
        description="share of the worker's time MLflow may take logging window metrics: after a batch that "
                    "took T s the logger rests T*(1/duty-1) s; windows arriving faster are thinned (alert "
                    "windows and the latest kept, counted as windows_thinned; all stay in the windows/ "
                    "artifact). Replays log every window")
    window_log_max_metrics: int = Field(1000, ge=10, description="window metrics logged per MLflow batch at most")
    window_artifact_interval_s: float = Field(
        60.0, gt=0, description="upload the full window records (windows/<model>/part-*.jsonl.gz) this often")


class EvidentlyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="snapshot windows into Evidently reports")
    workspace: Path | None = Field(None, description="default: <home>/evidently")
    every_n_windows: int = Field(10, ge=1, description="a report every N windows, and whenever a monitor fires")
    sample_size: int = Field(2000, ge=100, description="rows of the window and of the reference per report")
    executor: Literal["process", "thread"] = Field("process", description="where reports are rendered")
    max_pending: int = Field(2, ge=1, description="reports in flight; more are skipped and counted")
    render_duty: float = Field(
        0.25, gt=0, le=1,
        description="share of one core periodic reports may use: after a report that took T s of CPU, periodic "
                    "requests are skipped for T*(1/duty-1) s (and while one renders), counted as "
                    "skipped_budget; reports of alert windows are not limited (only by max_pending); 1 = no "
                    "budget. The render process runs at the lowest CPU priority (SCHED_IDLE, else nice 19)")
    ui_url: str | None = Field(None, description="Evidently UI base URL for alert links")


class Settings(BaseSettings):
    """Everything configurable, in one place. See docs/configuration.md."""

    model_config = SettingsConfigDict(
        env_prefix="GLASSBOX_",
        env_nested_delimiter="__",
        env_ignore_empty=True,
        env_parse_none_str="null",  # GLASSBOX_HEALTH__MAX_LAG=null turns a check off
        extra="forbid",
        toml_file="glassbox.toml",
    )

    home: Path = Field(Path(".glassbox"), description="local state: MLflow store, reports, silences")
    project: str = "glassbox"
    env: str = "local"
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
    attribution: AttributionConfig = Field(default_factory=AttributionConfig)
    alerting: AlertingConfig = Field(default_factory=AlertingConfig)
    health: PipelineHealthConfig = Field(default_factory=PipelineHealthConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    evidently: EvidentlyConfig = Field(default_factory=EvidentlyConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = os.environ.get("GLASSBOX_CONFIG") or "glassbox.toml"
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_path))

    @model_validator(mode="after")
    def _paths_under_home(self) -> Settings:
        if self.mlflow.tracking_uri is None:
            self.mlflow.tracking_uri = f"sqlite:///{self.home.as_posix()}/mlflow.db"
        if self.mlflow.artifact_root is None:
            self.mlflow.artifact_root = (self.home / "mlartifacts").as_posix()
        if self.evidently.workspace is None:
            self.evidently.workspace = self.home / "evidently"
        return self

    @model_validator(mode="after")
    def _sharding_needs_event_time(self) -> Settings:
        if self.worker.sharded_models and self.detection.window_ms is None:
            raise ValueError("worker.sharded_models needs event-time windows: set detection.window_ms")
        return self

    def topic(self, name: str) -> str:
        """Full topic name: ``predictions`` -> ``glassbox.predictions``."""
        return f"{self.kafka.topic_prefix}{name}"


class ConfigError(UserError, ValueError):
    """A configuration value is wrong; the message is one line naming the key and what is allowed."""


def describe_validation_error(err: ValidationError) -> str:
    """One line per problem: ``kafka.partitions: Input should be greater than or equal to 1 (got 0)``."""
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "settings"
        got = e.get("input")
        got_s = "" if isinstance(got, dict) else f" (got {got!r})"
        msg = "unknown setting" if e["type"] == "extra_forbidden" else e["msg"]
        parts.append(f"{key}: {msg}{got_s}")
    return "; ".join(parts)


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Load settings from ``path`` (or ``GLASSBOX_CONFIG`` / ``./glassbox.toml``), env and overrides.

    Raises :class:`ConfigError` with a single readable line on any invalid value.
    """
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
    old = os.environ.get("GLASSBOX_CONFIG")
    try:
        if path is not None:
            os.environ["GLASSBOX_CONFIG"] = str(path)
        return Settings(**overrides)
    except ValidationError as err:
        raise ConfigError(f"invalid configuration: {describe_validation_error(err)}") from None
    except (OSError, ValueError) as err:  # unreadable or malformed TOML
        where = path or os.environ.get("GLASSBOX_CONFIG") or "glassbox.toml"
        raise ConfigError(f"cannot read config {where}: {err}") from None
    finally:
        if path is not None:
            if old is None:
                os.environ.pop("GLASSBOX_CONFIG", None)
            else:
                os.environ["GLASSBOX_CONFIG"] = old

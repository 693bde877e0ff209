"""What a backtest runs under: the rule sets (``--config``, ``--compare``), the truth to score against, and the
pipelines a topic replay feeds.

Anything the user can fix here is a :class:`BacktestError` (a :class:`~stream.errors.UserError`: exit code 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from stream.errors import UserError
from stream.pipeline.monitors import MonitorRegistry

if TYPE_CHECKING:
    from detectors.scoring import ChangePoint


class BacktestError(UserError, ValueError):
    """A backtest that cannot run as asked."""


def load_truth(path: Path) -> list[ChangePoint]:
    """Change points from a JSON file; one-line :class:`BacktestError` when it cannot be used."""
    from detectors.scoring import TruthError, parse_truth

    try:
        doc = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise BacktestError(f"no such truth file: {path}") from None
    except OSError as err:
        raise BacktestError(f"cannot read truth file {path}: {err.strerror or err}") from None
    except orjson.JSONDecodeError as err:
        raise BacktestError(f"truth file {path} is not valid JSON: {err}") from None
    try:
        changes = parse_truth(doc)
    except TruthError as err:
        raise BacktestError(f"truth file {path}: {err}") from None
    if not changes:
        raise BacktestError(f"truth file {path} lists no change points")
    return changes


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; :class:`BacktestError` when it cannot be read."""
    import tomllib

    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise BacktestError(f"cannot read config {path}: {err}") from None


def overlay_detection(base: Any, path: Path) -> Any:
    """Rule set B: ``base`` (A's detection config) with the keys of ``path``'s ``[detection]`` table replaced."""
    from pydantic import ValidationError

    from detectors.config import DetectionConfig

    table = read_toml(path).get("detection", {})
    if not isinstance(table, dict):
        raise BacktestError(f"{path}: [detection] must be a table")
    try:
        return DetectionConfig.model_validate({**base.model_dump(), **table})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ()))
        raise BacktestError(f"{path}: [detection] {where}: {first.get('msg')}") from None


def settings_for(config: Path | None, window: int | None, reference: str | None, model: str | None) -> Any:
    """Rule set A for a topic: the settings of ``config`` with ``--window`` and ``--model``/``--reference``."""
    from stream.settings import load_settings

    s = load_settings(config)
    upd: dict[str, Any] = {}
    if window is not None:
        upd["detection"] = s.detection.model_copy(update={"window": window})
    if reference is not None and model is not None:
        upd["worker"] = s.worker.model_copy(update={"models": {**s.worker.models, model: reference}})
    return s.model_copy(update=upd) if upd else s


def compare_settings(a: Any, compare: Path) -> Any:
    """Rule set B for a topic: A's settings with B's ``[detection]`` keys, and B's ``[worker.models]`` if any."""
    b = a.model_copy(update={"detection": overlay_detection(a.detection, compare)})
    models = (read_toml(compare).get("worker") or {}).get("models")
    if models:
        b = b.model_copy(update={"worker": a.worker.model_copy(update={"models": dict(models)})})
    return b


class EveryModel(MonitorRegistry):
    """Every model found in the topic is monitored against the one ``--reference``."""

    def __init__(self, reference: str, config: Any, loader: Any):
        super().__init__({}, config, loader)
        self._ref = reference

    @property
    def discovery(self) -> bool:
        return False

    def accepts(self, model: str) -> bool:
        self.references.setdefault(model, self._ref)
        return True


def kafka_pipelines(settings_list: list[Any], reference: str | None, model: str | None) -> list[Any]:
    """One worker pipeline per rule set (every model against ``reference`` when no ``model`` is named); the
    models a rule set shards get their combiners (:mod:`stream.backtest.shard_replay`), as live."""
    from stream.backtest.shard_replay import ShardReplay, sharded
    from stream.evidence.reference import load_reference_for
    from stream.worker.agents import build_pipeline

    pipes = []
    for s in settings_list:
        if not s.worker.models and reference is None:
            raise BacktestError("nothing to monitor: pass --reference REF (and --model NAME), or configure "
                                "[worker.models] in the config")
        pipe = build_pipeline(s)
        if reference is not None and model is None:
            pipe.monitors = EveryModel(reference, s.detection, lambda ref, _s=s: load_reference_for(ref, _s))
        if sharded(pipe):
            pipe = ShardReplay(pipe, s.kafka.partitions, s.worker.allowed_lateness_s)
        pipes.append(pipe)
    return pipes

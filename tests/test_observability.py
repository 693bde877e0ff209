"""The operators' view: Debian's ``prometheus`` scrapes a real worker (fed with a drifting stream) and a real
notifier, configured from ``deploy/prometheus/prometheus.yml``, and every query of the provisioned Grafana
dashboard (``deploy/grafana/dashboards/glassbox.json``) returns series through Prometheus's HTTP API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream.kafka.broker import free_port
from stream.producer import Producer
from stream.worker.prometheus import WorkerMetrics
from tests.kafka_util import WorkerProcess
from tests.synth import frame

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "glassbox.json"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
PROMETHEUS = shutil.which("prometheus")
T0 = 1_700_000_000_000
QUIET = {"GLASSBOX_MLFLOW__ENABLED": "false", "GLASSBOX_EVIDENTLY__ENABLED": "false",
         "GLASSBOX_ATTRIBUTION__ENABLED": "false"}



def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of the dashboard."""
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p["targets"]]


def local_config(targets: dict[str, int]) -> dict[str, Any]:
    """The compose Prometheus config with each job's DNS discovery replaced by a loopback target."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"]["scrape_interval"] = "1s"
    jobs = [job["job_name"] for job in config["scrape_configs"]]
    assert sorted(jobs) == sorted(targets)
    for job in config["scrape_configs"]:
        del job["dns_sd_configs"]
        job["static_configs"] = [{"targets": [f"127.0.0.1:{targets[job['job_name']]}"]}]
    return config


@contextmanager
def process(args: list[str], log_path: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def query(port: int, promql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.mark.system
@pytest.mark.skipif(PROMETHEUS is None, reason="no prometheus binary (Debian: apt-get install prometheus)")
@pytest.mark.timeout(180)
def test_every_dashboard_query_returns_series(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    ref_path = tmp_path / "reference.parquet"
    frame(4000, seed=1).drop(columns=["score"]).to_parquet(ref_path)
    n = 4000
    events = frame(n, seed=2, scenario="mean_shift", at=1000).drop(columns=["score", "label"])
    features = [c for c in events.columns if c != "prediction"]
    app_id = f"{topic_prefix}obs"
    worker = WorkerProcess(kafka_bootstrap, topic_prefix, app_id=app_id, home=tmp_path / "w",
                           models={"m": str(ref_path)}, audit=False,
                           extra_env={**QUIET, "GLASSBOX_DETECTION__WINDOW": "500",
                                      "GLASSBOX_HEALTH__INTERVAL_S": "0.5"})
    notifier_port, prom_port = free_port(), free_port()
    notifier_env = {**worker.env, "GLASSBOX_ALERTING__METRICS_PORT": str(notifier_port),
                    "GLASSBOX_ALERTING__GROUP_WAIT": "0.5"}  # no receiver secrets: alerts go to the log
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(local_config({"glassbox-worker": worker.web_port,
                                                   "glassbox-notifier": notifier_port})))
    prom_args = [str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}"]
    with (worker, process([sys.executable, "-m", "stream.cli", "alerts", "notify"], tmp_path / "notifier.log",
                          notifier_env | {"GLASSBOX_HOME": str(tmp_path / "n")}),
          process(prom_args, tmp_path / "prometheus.log", dict(os.environ)) as prom):
        worker.wait_ready(timeout_s=60)
        with Producer(kafka_bootstrap, topic_prefix=topic_prefix) as prod:
            for lo in range(0, n, 250):
                part = events.iloc[lo:lo + 250]
                prod.send_prediction_batch(
                    model="m", prediction_ids=[f"e{i}" for i in range(lo, lo + len(part))],
                    timestamps=[T0 + i * 10 for i in range(lo, lo + len(part))],
                    features={c: part[c].tolist() for c in features}, predictions=part["prediction"].tolist())
                prod.send_raw(prod.predictions_topic, b"{not json", key="m")  # a dead letter per batch
                prod.flush()
                time.sleep(0.1)  # spread over a few scrapes, so that rates have two samples
        worker.wait_for(lambda s: s["events"] == n and s["alerts"] > 0, timeout_s=60)

        queries = dashboard_queries()
        assert len(queries) >= 9
        empty: list[tuple[str, str]] = queries
        results: dict[str, list[dict[str, Any]]] = {}
        deadline = time.monotonic() + 45
        while empty and time.monotonic() < deadline:
            assert prom.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
            results = {q: query(prom_port, q) for _, q in queries}
            empty = [(title, q) for title, q in queries if not results[q]]
            time.sleep(1)
        with urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/api/v1/targets", timeout=5) as r:
            targets = [(t["labels"]["job"], t["health"], t["lastError"]) for t in json.loads(r.read())["data"]
                       ["activeTargets"]]
        assert not empty, (f"dashboard queries without series: {empty}\ntargets: {targets}\n"
                           f"{(tmp_path / 'notifier.log').read_text()[-2000:]}")

    by_title = {title: results[q] for title, q in queries}
    up = {s["metric"]["job"]: float(s["value"][1]) for s in by_title["Targets up"]}
    assert up == {"glassbox-worker": 1.0, "glassbox-notifier": 1.0}
    alerts = {(s["metric"]["monitor"], s["metric"]["severity"]) for s in
              by_title["Alerts by monitor and severity (firing, last hour)"]}
    assert ("data_drift", "warning") in alerts, alerts
    assert any(s["metric"]["receiver"] == "log" and s["metric"]["outcome"] == "delivered"
               for s in by_title["Notifications"])
    assert {s["metric"]["reason"] for s in by_title["Dead letters per second"]} == {"bad_json"}
    # the shifted columns (num_10, num_11) are above their thresholds in the latest window, a stable one is not
    ratio = {s["metric"]["column"]: float(s["value"][1]) for s in
             by_title["Statistic / threshold (above 1: drifting)"]}
    assert ratio["num_10"] > 1 and ratio["num_11"] > 1 and ratio["num_0"] < 1, ratio


@pytest.mark.skipif(shutil.which("promtool") is None, reason="no promtool (Debian: apt-get install prometheus)")
def test_compose_prometheus_config_is_valid() -> None:
    out = subprocess.run(["promtool", "check", "config", str(PROMETHEUS_CONFIG)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr


# in process: the window gauges stay bounded and follow the latest window ---------------------------------------

def window(columns: dict[str, tuple[str, float, float | None]], tested: bool = True) -> dict[str, Any]:
    return {"kind": "predictions", "tested": tested,
            "columns": {c: {"statistic": s, "value": v, "threshold": t} for c, (s, v, t) in columns.items()}}


def samples(m: WorkerMetrics, name: str) -> dict[tuple[str, str, str], float]:
    return {(s.labels["model"], s.labels["column"], s.labels["statistic"]): s.value
            for fam in m.registry.collect() for s in fam.samples if s.name == name}


def test_window_gauges_follow_the_latest_window_with_bounded_labels() -> None:
    m = WorkerMetrics(max_models=1, max_columns=2)
    m.observe_windows([("a", window({"x": ("psi", 0.1, 0.2), "y": ("chi2", 3.0, 9.0), "z": ("psi", 0.5, 0.2)})),
                       ("b", window({"x": ("psi", 0.9, 0.2)})),  # beyond max_models: no series
                       ("a", {"kind": "outcomes", "columns": {}})])
    assert samples(m, "glassbox_window_statistic") == {("a", "x", "psi"): 0.1, ("a", "y", "chi2"): 3.0}
    assert samples(m, "glassbox_window_threshold") == {("a", "x", "psi"): 0.2, ("a", "y", "chi2"): 9.0}
    # a window with too few events is not tested: nothing changes; a dynamic bound has no threshold series;
    # a column whose statistic changes keeps one series
    m.observe_windows([("a", window({"x": ("psi", 7.0, 7.0)}, tested=False))])
    m.observe_windows([("a", window({"x": ("psi", 0.3, None), "y": ("js", 0.2, 0.1)}))])
    assert samples(m, "glassbox_window_statistic") == {("a", "x", "psi"): 0.3, ("a", "y", "js"): 0.2}
    assert samples(m, "glassbox_window_threshold") == {("a", "y", "js"): 0.1}


def test_alerts_are_counted_by_monitor_severity_and_status() -> None:
    m = WorkerMetrics()
    m.count_alerts([{"monitor": "data_drift", "severity": "warning", "status": "firing"}] * 2
                   + [{"monitor": "pipeline", "severity": "critical", "status": "resolved"}])
    got = {(s.labels["monitor"], s.labels["severity"], s.labels["status"]): s.value
           for fam in m.registry.collect() for s in fam.samples if s.name == "glassbox_alerts_total"}
    assert got == {("data_drift", "warning", "firing"): 2.0, ("pipeline", "critical", "resolved"): 1.0}

"""How much the notifier costs per alert, next to decoding the alert (the baseline, measured in the same run).

    uv run python bench/bench_alerting.py

Prints: orjson decode (baseline), lifecycle decide(), Dispatcher.process with the log receiver only
(decisions + sqlite state + journal, no HTTP), and delivery to local Slack + PagerDuty servers through
slack-sdk and pdpyras.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.alert import make_alert  # noqa: E402
from stream.alerting.config import AlertingConfig  # noqa: E402
from stream.alerting.dispatch import Dispatcher  # noqa: E402
from stream.alerting.lifecycle import decide  # noqa: E402
from stream.alerting.store import AlertingStore  # noqa: E402
from tests.sinks import Sink  # noqa: E402

T0 = 1_700_000_000_000


def alerts(n: int, fingerprints: int, severity: str = "warning") -> list[dict]:
    return [
        make_alert(model=f"m{i % fingerprints // 10}", monitor="data_drift", feature=f"f{i % fingerprints}",
                   status="firing", severity=severity, detector="psi", statistic="psi", value=0.3, threshold=0.2,
                   threshold_kind="calibrated", window={"index": i // fingerprints, "start": 0, "end": 1,
                                                        "events": 1000},
                   event_time=T0 + (i // fingerprints) * 60_000, summary="drift")
        for i in range(n)
    ]


def best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    logging.disable(logging.WARNING)
    n = 20_000
    batch = alerts(n, 1000)
    raw = [orjson.dumps(a) for a in batch]
    base = best(lambda: [orjson.loads(r) for r in raw]) / n

    def run_decide() -> None:
        states: dict = {}
        for a in batch:
            states[a["fingerprint"]], _ = decide(states.get(a["fingerprint"]), a, repeat_interval_ms=1_800_000,
                                                 receivers=("log",))

    dec = best(run_decide) / n

    def run_dispatch() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            d = Dispatcher(AlertingConfig(routes=[{"receivers": ["log"]}], repeat_interval="30m"),
                           AlertingStore(Path(tmp) / "a.sqlite"))

            async def go() -> None:
                for i in range(0, n, 500):
                    await d.process(batch[i:i + 500])

            asyncio.run(go())

    disp = best(run_dispatch, 2) / n

    with Sink() as sink, tempfile.TemporaryDirectory() as tmp:
        crit = alerts(200, 200, "critical")  # 20 models x 10 features: 20 Slack messages + 200 PagerDuty events
        cfg = AlertingConfig(slack_token=sink.slack_token, slack_api_url=sink.slack_api_url,
                             pagerduty_routing_key=sink.routing_key, pagerduty_url=sink.url)
        d = Dispatcher(cfg, AlertingStore(Path(tmp) / "a.sqlite"))
        t = time.perf_counter()
        asyncio.run(d.process(crit))
        http = time.perf_counter() - t
        lat = [b.at - a.at for a, b in zip(sink.requests, sink.requests[1:], strict=False)]
        n_req = len(sink.requests)

    print(f"alerts: {n} (1000 fingerprints, re-emitted every window, repeat_interval 30 min)")
    print(f"baseline orjson.loads per alert:       {base * 1e6:8.2f} us")
    print(f"lifecycle decide() per alert:          {dec * 1e6:8.2f} us   ({dec / base:5.1f}x baseline)")
    print(f"Dispatcher.process per alert (log):    {disp * 1e6:8.2f} us   ({disp / base:5.1f}x baseline, "
          f"{1 / disp:,.0f} alerts/s)")
    print(f"200 critical alerts to Slack+PagerDuty: {http:.2f} s, {n_req} HTTP requests "
          f"({n_req / http:,.0f} req/s; median gap {statistics.median(lat) * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()

"""One step of monitoring, shared by the live worker and the replay: parse, join labels, detect.

:mod:`~stream.pipeline.parse_events` validates raw messages against the contract of :mod:`stream.events`,
:mod:`~stream.pipeline.parse_step` turns a batch of raw Kafka messages into typed per-model columns and dead
letters, :mod:`~stream.pipeline.label_join` joins late labels to their predictions,
:mod:`~stream.pipeline.monitors` holds one :class:`detectors.monitor.ModelMonitor` per model, and
:mod:`~stream.pipeline.pipeline` chains them. No Faust, no asyncio: the worker feeds it from agents and the
backtest from a file or a topic reader, so live and replay cannot diverge.
"""

"""Backtests: replay a file or a Kafka topic through the worker's pipeline and get the same alerts.

:mod:`~stream.backtest.table_files` reads parquet, CSV and JSON lines and :mod:`~stream.backtest.event_columns`
turns their columns into events; :mod:`~stream.backtest.file_replay` replays a file.
:mod:`~stream.backtest.topic_range` is the range asked for, :mod:`~stream.backtest.topic_reader` reads it and
:mod:`~stream.backtest.reader_process` runs the reader in a child process for :mod:`~stream.backtest.topic_replay`.
:mod:`~stream.backtest.rule_sets` (configs, truth) and :mod:`~stream.backtest.outcomes` (a
:class:`~stream.backtest.outcomes.ReplayRequest` run under one or two rule sets) serve ``glassbox replay``;
:mod:`~stream.backtest.timeline` draws the result.
"""

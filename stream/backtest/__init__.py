"""Backtests: replay a file or a Kafka topic through the worker's pipeline and get the same alerts.

:mod:`~stream.backtest.table_files` reads parquet, CSV and JSON lines; :mod:`~stream.backtest.file_replay`
replays a file; :mod:`~stream.backtest.topic_reader` reads a topic range in a child process and
:mod:`~stream.backtest.topic_replay` replays it; :mod:`~stream.backtest.timeline` draws the result.
"""

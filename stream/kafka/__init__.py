"""Kafka plumbing: client settings, the embedded broker, topic creation, the Faust app and the state topic.

Everything that speaks the Kafka protocol lives here, with the workarounds for the embedded broker (Tansu):
its ``end_offsets`` is unreliable, so restores read to the fetch high watermark; it does not enforce compaction
or retention, so tests never rely on them. May import :mod:`stream.settings` and :mod:`stream.errors`; never
the pipeline, the worker, the CLI or the core's detectors.
"""

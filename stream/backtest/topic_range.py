"""What a topic replay reads: the range asked for (:class:`ReplayRange`), the plan per partition and what the
reader did (:class:`ReadStats`), and the error a user can fix (:class:`KafkaReplayError`).

>>> ReplayRange(from_offset={0: 10, 3: 250}, until_ms=1_700_000_000_000).describe()
'offsets [0:10,3:250, end) and times [start, 1700000000000) ms'
>>> offset_for({0: 10}, 1) is None, offset_for(7, 1)
(True, 7)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stream.errors import UserError

KAFKA_SCHEME = "kafka://"


def is_kafka_uri(events: str) -> bool:
    """Whether ``events`` names a topic (``kafka://...``) rather than a file."""
    return str(events).startswith(KAFKA_SCHEME)


PREDICTIONS, LABELS = 0, 1  # merge rank: predictions first on equal keys


class KafkaReplayError(UserError, ValueError):
    """A topic replay that cannot run as asked (no such topic, an empty range, a bad offset)."""


@dataclass
class ReplayRange:
    """Which records to replay: offsets ``[from_offset, to_offset)`` and record times ``[since, until)``."""

    from_offset: int | dict[int, int] | None = None
    to_offset: int | dict[int, int] | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def describe(self) -> str:
        parts = []
        if self.from_offset is not None or self.to_offset is not None:
            parts.append(f"offsets [{_fmt(self.from_offset, 'start')}, {_fmt(self.to_offset, 'end')})")
        if self.since_ms is not None or self.until_ms is not None:
            parts.append(f"times [{self.since_ms or 'start'}, {self.until_ms or 'end'}) ms")
        return " and ".join(parts) or "the whole topic"

    def validate(self) -> None:
        if self.since_ms is not None and self.until_ms is not None and self.until_ms <= self.since_ms:
            raise KafkaReplayError(f"empty range: --until ({self.until_ms}) is not after --since ({self.since_ms})")
        if isinstance(self.from_offset, int) and isinstance(self.to_offset, int) and self.to_offset <= self.from_offset:
            raise KafkaReplayError(f"empty range: --to-offset {self.to_offset} is not after --from-offset "
                                   f"{self.from_offset}")


def _fmt(v: int | dict[int, int] | None, dflt: str) -> str:
    if v is None:
        return dflt
    if isinstance(v, int):
        return str(v)
    return ",".join(f"{p}:{o}" for p, o in sorted(v.items()))


def offset_for(v: int | dict[int, int] | None, partition: int) -> int | None:
    """The offset a range option gives ``partition`` (one for all, or per partition)."""
    return v.get(partition) if isinstance(v, dict) else v


@dataclass
class PartitionPlan:
    """One partition to read: its offset range and, once read, the first and last offsets handed on."""

    topic: str
    partition: int
    rank: int
    start: int
    end: int | None  # exclusive; None until the high watermark is known
    read: int = 0  # records handed on (inside the range)
    first: int | None = None
    last: int | None = None


@dataclass
class ReadStats:
    """What the reader did (also the progress figures)."""

    method: str = "offsets"  # offsets | offsets_for_times | scan
    plans: list[PartitionPlan] = field(default_factory=list)
    messages: int = 0  # records handed to the pipelines
    skipped: int = 0  # records read but outside the time range
    fetched_bytes: int = 0

    def total(self) -> int | None:
        """Records in the offset range (None until every end is known)."""
        if any(p.end is None for p in self.plans):
            return None
        return sum(max(p.end - p.start, 0) for p in self.plans if p.end is not None)

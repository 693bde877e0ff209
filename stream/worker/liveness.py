"""Liveness of a worker, distinct from ``/stats``: a stuck consumer must be restarted, not just watched.

faust-streaming has open reports of consumers that never rejoin after a broker outage (coordinator marked dead
in a loop, #594) and of agents that stop after days (#523). ``/live`` answers 503 when input is waiting (lag
above zero) while nothing was consumed for ``stuck_after_s``, or when the worker has held no input partition for
``unassigned_after_s``; the container health check and a restart policy then replace it. A frozen event loop
does not answer at all, which fails the health check too.

>>> live = Liveness(stuck_after_s=60, unassigned_after_s=120, now=0.0)
>>> live.update(now=10.0, messages=5, lag=3, assigned=True)
(True, 'ok')
>>> live.update(now=80.0, messages=5, lag=3, assigned=True)
(False, 'nothing consumed for 70 s while 3 messages wait')
>>> live.update(now=81.0, messages=6, lag=2, assigned=True)
(True, 'ok')
"""

from __future__ import annotations

from typing import Any


class Liveness:
    """Tracks progress between checks; ``update`` returns (alive, reason)."""

    def __init__(self, stuck_after_s: float | None, unassigned_after_s: float | None, *, now: float):
        self.stuck_after_s = stuck_after_s
        self.unassigned_after_s = unassigned_after_s
        self._messages = -1
        self._progress_at = now  # last time something was consumed, or nothing was waiting
        self._assigned_at = now  # last time the worker held an input partition
        self.state: tuple[bool, str] = (True, "starting")

    def update(self, *, now: float, messages: int, lag: int | None, assigned: bool) -> tuple[bool, str]:
        if messages != self._messages or not lag:
            self._messages, self._progress_at = messages, now
        if assigned:
            self._assigned_at = now
        idle, unassigned = now - self._progress_at, now - self._assigned_at
        if self.stuck_after_s is not None and lag and idle > self.stuck_after_s:
            self.state = (False, f"nothing consumed for {idle:.0f} s while {lag} messages wait")
        elif self.unassigned_after_s is not None and unassigned > self.unassigned_after_s:
            self.state = (False, f"no input partition for {unassigned:.0f} s")
        else:
            self.state = (True, "ok")
        return self.state


def live_response(web: Any, state: tuple[bool, str]) -> Any:
    """The ``/live`` answer: 200 or 503 with the reason."""
    ok, reason = state
    return web.json({"live": ok, "reason": reason}, status=200 if ok else 503)

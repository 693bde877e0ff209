"""Hysteresis: an alert fires when its condition holds and resolves only after it cleared for K windows.

One :class:`Hysteresis` per alert condition (model, monitor, feature). ``update`` takes the window's
verdict and returns the transition to announce, if any. A change of direction while firing (a metric
going from worse to better than the reference) is announced as a new ``firing`` with the new direction.

>>> h = Hysteresis(fire_after=1, resolve_after=2)
>>> [h.update(c) for c in (False, True, True, False, True, False, False, False)]
[None, 'firing', None, None, None, None, 'resolved', None]
"""

from __future__ import annotations

from typing import Any


class Hysteresis:
    """Firing/resolved state of one alert condition."""

    __slots__ = ("fire_after", "resolve_after", "firing", "hold", "clear", "direction")

    def __init__(self, fire_after: int = 1, resolve_after: int = 3):
        self.fire_after = fire_after
        self.resolve_after = resolve_after
        self.firing = False
        self.hold = 0  # consecutive windows with the condition
        self.clear = 0  # consecutive windows without it
        self.direction: str | None = None

    def update(self, condition: bool, direction: str | None = None) -> str | None:
        """Feed one window's verdict; returns ``"firing"``, ``"resolved"`` or ``None`` (no change)."""
        if condition:
            self.hold += 1
            self.clear = 0
            if not self.firing and self.hold >= self.fire_after:
                self.firing, self.direction = True, direction
                return "firing"
            if self.firing and direction is not None and direction != self.direction:
                self.direction = direction
                return "firing"
            return None
        self.hold = 0
        if self.firing:
            self.clear += 1
            if self.clear >= self.resolve_after:
                self.firing, self.clear = False, 0
                return "resolved"
        return None

    def to_state(self) -> dict[str, Any]:
        return {"firing": self.firing, "hold": self.hold, "clear": self.clear, "direction": self.direction}

    def load_state(self, state: dict[str, Any]) -> None:
        self.firing = bool(state["firing"])
        self.hold = int(state["hold"])
        self.clear = int(state["clear"])
        self.direction = state.get("direction")

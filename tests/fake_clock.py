"""A controllable stand-in for ``time.time``, so time-dependent behaviour is tested without sleeping."""

from __future__ import annotations


class FakeClock:
    """Epoch seconds that stand still until a test moves them."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

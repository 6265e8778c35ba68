"""What every reliability area reports: named checks with how many cases were tried and passed."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Check:
    """One kind of fault or input, tried ``tried`` times, survived ``passed`` times.

    Attributes:
        area: the suite's area (``hostile input``, ``faults``, ``kills``, ``corruption``, ...).
        name: what was done, in a few words.
        tried: cases run.
        passed: cases that behaved as required.
        notes: what "passed" means here, and anything a reader needs to judge the numbers.
        failures: a few failing cases, for the report (bounded).
    """

    area: str
    name: str
    tried: int = 0
    passed: int = 0
    notes: str = ""
    failures: list[str] = field(default_factory=list)

    def record(self, ok: bool, case: str = "") -> None:
        """Count one case; keep the first few failures' descriptions."""
        self.tried += 1
        if ok:
            self.passed += 1
        elif len(self.failures) < 5:
            self.failures.append(case)

    @property
    def ok(self) -> bool:
        """Every case passed (and there was at least one)."""
        return self.tried > 0 and self.passed == self.tried

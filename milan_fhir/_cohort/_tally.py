"""Counting a cohort: verdicts, criterion statuses, and the flow of patients lost at each criterion.

The flow follows the order of the criteria (``_domain.CRITERIA``): every patient of the cohort enters at the
first criterion and leaves the flow at the first criterion that is ``not_met``; those who pass all six without
a ``not_met`` are the ones still possible, split into ``eligible`` (all met) and ``indeterminate``. At each step
the flow also counts how many of the patients still in it are ``indeterminate`` on that criterion (they stay in).
Tallies are plain counters, so those of different workers add up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from .._domain import CRITERIA

__all__ = ["Tally", "STATUSES", "VERDICTS"]

STATUSES = ("met", "not_met", "indeterminate")
VERDICTS = ("eligible", "ineligible", "indeterminate")


@dataclass
class Tally:
    patients: int = 0
    verdicts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VERDICTS, 0))
    criteria: dict[str, dict[str, int]] = field(
        default_factory=lambda: {c: dict.fromkeys(STATUSES, 0) for c in CRITERIA}
    )
    lost_at: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CRITERIA, 0))
    indeterminate_in_flow: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CRITERIA, 0))

    def add(self, verdict: str, statuses: dict[str, str]) -> None:
        self.patients += 1
        self.verdicts[verdict] = self.verdicts.get(verdict, 0) + 1
        in_flow = True
        for name in CRITERIA:
            status = statuses.get(name, "indeterminate")
            self.criteria[name][status] += 1
            if not in_flow:
                continue
            if status == "not_met":
                self.lost_at[name] += 1
                in_flow = False
            elif status == "indeterminate":
                self.indeterminate_in_flow[name] += 1

    def merge(self, other: "Tally") -> None:
        self.patients += other.patients
        for k, v in other.verdicts.items():
            self.verdicts[k] = self.verdicts.get(k, 0) + v
        for c in CRITERIA:
            for s in STATUSES:
                self.criteria[c][s] += other.criteria[c][s]
            self.lost_at[c] += other.lost_at[c]
            self.indeterminate_in_flow[c] += other.indeterminate_in_flow[c]

    def flow(self) -> list[dict[str, Any]]:
        """One step per criterion: entering, lost (first not_met here), remaining, indeterminate (stay in)."""
        steps = []
        remaining = self.patients
        for c in CRITERIA:
            entering = remaining
            remaining = entering - self.lost_at[c]
            steps.append({
                "criterion": c,
                "entering": entering,
                "lost": self.lost_at[c],
                "remaining": remaining,
                "indeterminate": self.indeterminate_in_flow[c],
            })
        return steps

    def as_dict(self) -> dict[str, Any]:
        return {
            "patients": self.patients,
            "verdicts": dict(self.verdicts),
            "criteria": {c: dict(v) for c, v in self.criteria.items()},
            "flow": self.flow(),
        }

    @classmethod
    def of(cls, rows: Iterable[tuple[str, dict[str, str]]]) -> "Tally":
        t = cls()
        for verdict, statuses in rows:
            t.add(verdict, statuses)
        return t

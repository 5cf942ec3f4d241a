"""Counting a cohort: verdicts, criterion statuses, cautions, and the flow of patients through them.

The flow (docs/cohort.md, docs/criteria.md §1c): every patient of the cohort enters. First the prerequisites
(criteria.md §1c): patients with an **excluding** caution (deceased, prior liver transplant) leave the flow;
the **capping** cautions (no liver metastasis record, other active malignancy) are their own step: the patients
who carry one stay in but can no longer be within Milan; **informational** cautions (prior malignancy) are
counted at that step too and change nothing. Then the criteria, in the order of ``_domain.CRITERIA``: a patient
leaves at the first criterion that is ``not_met``; at each step the flow also counts how many of the patients
still in it are ``indeterminate`` on that criterion (they stay in). Those who pass every step are ``eligible``
(every criterion met, no capping caution) or ``indeterminate``.

``flow()`` gives the criterion steps (their keys are unchanged since v1), ``caution_flow()`` the prerequisite
steps before them. Tallies are plain counters, so those of different workers add up.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .._domain import CAPPING_CAUTIONS, CAUTION_CODES, CRITERIA, EXCLUDING_CAUTIONS

__all__ = ["Tally", "STATUSES", "VERDICTS", "CAUTION_STEPS"]

STATUSES = ("met", "not_met", "indeterminate")
VERDICTS = ("eligible", "ineligible", "indeterminate")

_INFORMING = tuple(c for c in CAUTION_CODES if c not in EXCLUDING_CAUTIONS and c not in CAPPING_CAUTIONS)
#: the prerequisite steps of the flow, in order: (step, caution codes, whether its patients leave the flow)
CAUTION_STEPS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("excluding", tuple(c for c in CAUTION_CODES if c in EXCLUDING_CAUTIONS), True),
    ("capping", tuple(c for c in CAUTION_CODES if c in CAPPING_CAUTIONS), False),
    ("informational", _INFORMING, False),
)


def _zero_steps() -> dict[str, dict[str, int]]:
    return {step: {"patients": 0, **dict.fromkeys(codes, 0)} for step, codes, _ in CAUTION_STEPS}


@dataclass
class Tally:
    patients: int = 0
    verdicts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VERDICTS, 0))
    criteria: dict[str, dict[str, int]] = field(
        default_factory=lambda: {c: dict.fromkeys(STATUSES, 0) for c in CRITERIA}
    )
    lost_at: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CRITERIA, 0))
    indeterminate_in_flow: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CRITERIA, 0))
    #: every caution over the whole cohort, by code (a patient counts once per code)
    cautions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CAUTION_CODES, 0))
    #: per prerequisite step: patients it applies to among those still in the flow, and per code
    caution_steps: dict[str, dict[str, int]] = field(default_factory=_zero_steps)

    def add(self, verdict: str, statuses: dict[str, str], cautions: Iterable[str] = ()) -> None:
        """One patient: its verdict, each criterion's status and the codes of its cautions."""
        self.patients += 1
        self.verdicts[verdict] = self.verdicts.get(verdict, 0) + 1
        codes = set(cautions)
        for code in sorted(codes):
            self.cautions[code] = self.cautions.get(code, 0) + 1
        in_flow = True
        for step, step_codes, leaves in CAUTION_STEPS:
            if not in_flow:
                break
            hit = [c for c in step_codes if c in codes]
            if not hit:
                continue
            counts = self.caution_steps[step]
            counts["patients"] += 1
            for c in hit:
                counts[c] += 1
            if leaves:
                in_flow = False
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

    def add_evaluation(self, ev: Any) -> None:
        """One :class:`~milan_fhir._domain.Evaluation`."""
        self.add(str(ev.verdict), {name: str(r.status) for name, r in ev.criteria.items()},
                 [c.code for c in ev.cautions])

    def merge(self, other: "Tally") -> None:
        self.patients += other.patients
        for k, v in other.verdicts.items():
            self.verdicts[k] = self.verdicts.get(k, 0) + v
        for c in CRITERIA:
            for s in STATUSES:
                self.criteria[c][s] += other.criteria[c][s]
            self.lost_at[c] += other.lost_at[c]
            self.indeterminate_in_flow[c] += other.indeterminate_in_flow[c]
        for k, v in other.cautions.items():
            self.cautions[k] = self.cautions.get(k, 0) + v
        for step, counts in other.caution_steps.items():
            mine = self.caution_steps.setdefault(step, {})
            for k, v in counts.items():
                mine[k] = mine.get(k, 0) + v

    def _excluded(self) -> int:
        return sum(self.caution_steps[step]["patients"] for step, _, leaves in CAUTION_STEPS if leaves)

    def caution_flow(self) -> list[dict[str, Any]]:
        """The prerequisite steps before the criteria: entering, lost (excluding cautions only), remaining,
        flagged (patients of the step who stay in), and the count of each caution code among them."""
        steps = []
        remaining = self.patients
        for step, codes, leaves in CAUTION_STEPS:
            counts = self.caution_steps[step]
            entering = remaining
            lost = counts["patients"] if leaves else 0
            remaining = entering - lost
            steps.append({
                "step": step,
                "entering": entering,
                "lost": lost,
                "remaining": remaining,
                "flagged": 0 if leaves else counts["patients"],
                "cautions": {c: counts[c] for c in codes},
            })
        return steps

    def flow(self) -> list[dict[str, Any]]:
        """One step per criterion, after the prerequisites: entering, lost (first not_met here), remaining,
        indeterminate (stay in)."""
        steps = []
        remaining = self.patients - self._excluded()
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
            "cautions": dict(self.cautions),
            "caution_flow": self.caution_flow(),
            "flow": self.flow(),
        }

    @classmethod
    def of(cls, rows: Iterable[tuple[Any, ...]]) -> "Tally":
        """From ``(verdict, statuses)`` or ``(verdict, statuses, caution codes)`` rows."""
        t = cls()
        for row in rows:
            t.add(*row)
        return t

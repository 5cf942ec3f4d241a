"""A cheap check on a raw NDJSON line, before parsing it: could the rules use this resource?

It must never reject a relevant resource; letting through an irrelevant one only costs a parse. A line passes
when it is a Patient, or when it is an Observation, Condition or Procedure with a ``"code"`` value among the
mapped codes of the sections the adapters recognise (compared without dots and case, so ``C7A012`` and
``c7a.012`` pass too).
"""

from __future__ import annotations

import re

from .._mappings import Mappings

__all__ = ["RawPrefilter", "PREFILTER_SECTIONS"]

#: Sections whose codes make a resource relevant (values and body sites never do on their own).
PREFILTER_SECTIONS = (
    "primary_net",
    "primary_net_by_morphology",
    "generic_cancer",
    "morphology",
    "metastasis",
    "ki67",
    "liver_burden",
    "disease_status",
    "extrahepatic_staging",
    "histologic_grade",
    "liver_metastasis_count",
    "largest_liver_metastasis",
    "primary_resection",
    "liver_resection_minor",
    "liver_resection_major",
    "liver_transplant",
)

_TYPES = (b'"Observation"', b'"Condition"', b'"Procedure"')
#: a ``"code": "..."`` value without escapes (no mapped code holds a backslash, so a value with one never matched)
_CODE_VALUE = re.compile(rb'"code"\s*:\s*"([^"\\]*)"')


def _key(code: bytes) -> bytes:
    return code.strip().upper().replace(b".", b"")


class RawPrefilter:
    """``RawPrefilter(mappings).wants(line)``: False only for lines the adapters would skip anyway."""

    def __init__(self, mappings: Mappings) -> None:
        keys = set()
        for section in PREFILTER_SECTIONS:
            for entry in mappings.codes_of(section):
                keys.add(_key(entry.code.encode("utf-8")))
        self._keys = frozenset(keys)

    def wants(self, line: bytes) -> bool:
        # the hot path of the cohort run (every line of an export): short-circuit tests, no generators, and the
        # exact code looked up before it is normalised (about 1.7x faster than any() over _key(); same result)
        if b'"Patient"' in line:
            return True
        if b'"Observation"' not in line and b'"Condition"' not in line and b'"Procedure"' not in line:
            return False
        keys = self._keys
        for m in _CODE_VALUE.findall(line):
            if m in keys or _key(m) in keys:
                return True
        return False

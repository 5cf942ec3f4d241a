"""Screening whole cohorts from FHIR Bulk Data exports (NDJSON), streaming, in parallel, with a report.

- :func:`run_cohort` (``milan-fhir cohort SOURCE --out DIR``): a folder of NDJSON files (plain or ``.gz``) to
  ``results.ndjson``, ``risk-assessments.ndjson``, ``errors.ndjson``, ``summary.json`` and ``report.html``.
- :func:`render_text`: the summary as terminal text.
- :mod:`._export`: kick off a server's ``$export`` and download the files (``--server``).

See docs/cohort.md.
"""

from __future__ import annotations

from ._report import criterion_labels, render_html, render_text
from ._run import COHORT_DEFINITION, OUTPUT_FILES, CohortResult, run_cohort
from ._tally import Tally

__all__ = ["run_cohort", "CohortResult", "render_text", "render_html", "criterion_labels", "Tally", "OUTPUT_FILES",
           "COHORT_DEFINITION"]

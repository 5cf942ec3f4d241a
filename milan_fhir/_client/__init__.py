"""Talking to FHIR servers: the HTTP client, fetching one patient's data, and safe write-back."""

from __future__ import annotations

from ._client import FhirClient, entry_error, error_for, next_link

__all__ = ["FhirClient", "entry_error", "error_for", "next_link"]

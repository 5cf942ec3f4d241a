"""R4B validation of the resources the rules use (never of irrelevant ones). Model classes load lazily."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pydantic import ValidationError

__all__ = ["validation_fault", "patient_fields", "PATIENT_FIELDS"]

_MODULES = {
    "Observation": "fhir.resources.R4B.observation",
    "Condition": "fhir.resources.R4B.condition",
    "Procedure": "fhir.resources.R4B.procedure",
    "Patient": "fhir.resources.R4B.patient",
}

#: The only Patient fields the rules read: a full Patient validation is slow (performance-notes.md).
PATIENT_FIELDS = ("resourceType", "id", "meta", "birthDate")


@lru_cache(maxsize=None)
def _model(rtype: str) -> Any:
    return getattr(importlib.import_module(_MODULES[rtype]), rtype)


def patient_fields(resource: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a Patient that is validated (the fields the rules read)."""
    return {k: resource[k] for k in PATIENT_FIELDS if k in resource}


def validation_fault(resource: dict[str, Any]) -> tuple[str, str] | None:
    """``(field path, reason)`` of the first R4B validation error, or None when the resource is valid."""
    rtype = resource.get("resourceType")
    if rtype not in _MODULES:
        return None
    data = patient_fields(resource) if rtype == "Patient" else resource
    try:
        _model(rtype).model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        if not errors:
            return ("", str(exc))
        first = errors[0]
        path = _path(first.get("loc", ()))
        return path, _message(first)
    except (TypeError, ValueError) as exc:  # fhir.resources raises plain errors for some shapes
        return "", str(exc).splitlines()[0]
    return None


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(err: Mapping[str, Any]) -> str:
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    value = err.get("input")
    if err.get("type") != "missing" and isinstance(value, (str, int, float, bool)) and len(str(value)) <= 60:
        msg = f"{msg} (found {value!r})"
    return msg

"""Reading FHIR input: a Bundle or single resource (JSON), NDJSON, ``.gz`` variants, or a folder of them.

``read_path`` yields :class:`Located` resources (the resource, its file, its line or Bundle entry index, its
Bundle ``fullUrl``). A file that cannot be read at all raises :class:`~milan_fhir.errors.InputError` with a
one-line message naming the file and the fault; one bad NDJSON line or Bundle entry is appended to ``problems``
as an :class:`InputProblem` and the rest goes on.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator

import orjson

from ._adapters._located import InputProblem, Located, iter_bundle_or_resource
from .errors import InputError

__all__ = ["Located", "InputProblem", "read_path", "read_resources", "FHIR_SUFFIXES"]

#: File names read from a folder (others, such as ``*.expected.yaml``, are ignored).
FHIR_SUFFIXES = (".json", ".ndjson", ".jsonl", ".json.gz", ".ndjson.gz", ".jsonl.gz")
_NDJSON_SUFFIXES = (".ndjson", ".jsonl", ".ndjson.gz", ".jsonl.gz")


def read_path(path: str | Path, problems: list[InputProblem]) -> Iterator[Located]:
    """Every resource in a file or a folder of FHIR files (not recursive), in file order."""
    p = Path(path)
    if p.is_dir():
        files = fhir_files(p)
        if not files:
            raise InputError(
                "the folder holds no FHIR files (*.json, *.ndjson, *.jsonl, optionally .gz)", file=str(p)
            )
        for f in files:
            yield from read_file(f, problems)
        return
    if not p.exists():
        raise InputError("no such file or folder", file=str(p))
    yield from read_file(p, problems)


def fhir_files(folder: Path) -> list[Path]:
    """The FHIR files of a folder, sorted by name."""
    return sorted(f for f in folder.iterdir() if f.is_file() and f.name.lower().endswith(FHIR_SUFFIXES))


def read_file(path: Path, problems: list[InputProblem]) -> Iterator[Located]:
    name = path.name.lower()
    if name.endswith(_NDJSON_SUFFIXES):
        yield from _read_ndjson(path, problems)
        return
    data = _read_bytes(path)
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if _looks_like_ndjson(data):
            yield from _ndjson_lines(data.splitlines(), str(path), problems)
            return
        raise InputError(f"not valid JSON ({_json_fault(exc)})", file=str(path)) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("resourceType"), str) or not obj["resourceType"]:
        what = "a JSON object without resourceType" if isinstance(obj, dict) else f"a JSON {_json_type(obj)}"
        raise InputError(f"not FHIR: found {what}, expected a Bundle or a resource", file=str(path))
    yield from iter_bundle_or_resource(obj, problems, str(path))


def read_resources(obj: Any, problems: list[InputProblem] | None = None) -> Iterator[Located]:
    """Resources of an in-memory input: a Bundle or resource dict, JSON text, or an iterable of dicts.

    Without ``problems``, the first problem raises :class:`~milan_fhir.errors.InputError`.
    """
    sink: list[InputProblem] = [] if problems is None else problems
    if isinstance(obj, (str, bytes)):
        try:
            obj = orjson.loads(obj)
        except orjson.JSONDecodeError as exc:
            raise InputError(f"not valid JSON ({_json_fault(exc)})") from None
    items: Iterable[Any] = [obj] if isinstance(obj, dict) else obj
    if isinstance(obj, dict) and not isinstance(obj.get("resourceType"), str):
        raise InputError("not FHIR: a JSON object without resourceType")
    for i, item in enumerate(items):
        line = None if isinstance(obj, dict) else i
        for located in iter_bundle_or_resource(item, sink, None, line):
            yield located
        if problems is None and sink:
            p = sink[0]
            raise InputError(p.reason, line=p.line, resource=p.resource, field=p.field)


# ---------------------------------------------------------------------------------------------- internals
def _read_bytes(path: Path) -> bytes:
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
        raise InputError(f"not a valid gzip file ({exc})", file=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None


def _read_ndjson(path: Path, problems: list[InputProblem]) -> Iterator[Located]:
    try:
        fh = gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    with fh:
        try:
            yield from _ndjson_lines(fh, str(path), problems)
        except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
            raise InputError(f"not a valid gzip file ({exc})", file=str(path)) from None
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None


def _ndjson_lines(lines: Iterable[bytes], file: str, problems: list[InputProblem]) -> Iterator[Located]:
    good = bad = 0
    first_fault = ""
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            bad += 1
            reason = f"not valid JSON ({_json_fault(exc)})"
            first_fault = first_fault or f"line {number}: {reason}"
            problems.append(InputProblem(file, number, None, None, reason))
            continue
        before = len(problems)
        for located in iter_bundle_or_resource(obj, problems, file, number):
            good += 1
            yield located
        if len(problems) > before:
            bad += 1
            first_fault = first_fault or f"line {number}: {problems[before].reason}"
    if bad and not good:
        raise InputError(f"no line is a FHIR resource; first fault at {first_fault}", file=file)


def _looks_like_ndjson(data: bytes) -> bool:
    first = data.lstrip().split(b"\n", 1)[0]
    try:
        obj = orjson.loads(first)
    except orjson.JSONDecodeError:
        return False
    return isinstance(obj, dict) and "resourceType" in obj


def _json_fault(exc: orjson.JSONDecodeError) -> str:
    return f"{exc.msg} at line {exc.lineno}, column {exc.colno}"


def _json_type(obj: Any) -> str:
    return {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(obj), "null" if obj is None else type(obj).__name__
    )

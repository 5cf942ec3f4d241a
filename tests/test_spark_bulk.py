"""The Spark scan screens the rows of a split as one buffer (the local engine's ``select_lines``): it must give
exactly the rows the row-by-row reading gives. Arrow batches built here, no Spark session needed."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from milan_fhir._mappings import default_mappings
from milan_fhir._spark._tasks import Settings, scan_partition

from test_cohort import make_export

_MAX = 4096
_HOSTILE = [b"", b"   ", b"\xef\xbb\xbf{}", b"not json", b"{\"resourceType\": \"Observation\"", b"[1, 2]",
            b"{\"resourceType\":\"Patient\",\"id\":\"p\\u0031\",\"birthDate\":\"1960-01-01\"}\r",
            b"\t{\"resourceType\":\"Condition\",\"id\":\"c9\",\"subject\":{\"reference\":\"Patient/p1\"}}  ",
            b"{" + b"x" * (_MAX + 10) + b"}", b"\x00\xff", b"{\"resourceType\":\"Bundle\",\"type\":\"collection\"}",
            b"{\"a\": 1}\n{\"resourceType\": \"Patient\", \"id\": \"nl\"}"]


@pytest.fixture(scope="module")
def lines(tmp_path_factory) -> list[bytes]:
    export = make_export(tmp_path_factory.mktemp("bulk"), patients=30, resources=12, parts=1)
    out: list[bytes] = []
    for f in sorted(Path(export).glob("*.ndjson")):
        out.extend(f.read_bytes().splitlines())
    return out


def _settings() -> Settings:
    return Settings(default_mappings(), ("a.ndjson", "b.ndjson"), {"a": 0, "b": 1}, _MAX, None, None, False)


def _batches(rows: list[tuple[str, int, bytes | None]], size: int) -> list[pa.RecordBatch]:
    schema = pa.schema([("file", pa.string()), ("start", pa.int64()), ("value", pa.binary())])
    return [pa.RecordBatch.from_pylist([dict(zip(("file", "start", "value"), r)) for r in rows[i:i + size]],
                                       schema=schema) for i in range(0, len(rows), size)]


def _rows(batches, bulk: bool) -> list[tuple]:
    out = []
    for batch in scan_partition(iter(batches), _settings(), bulk=bulk):
        for row in batch.to_pylist():
            if row["kind"] == 0:  # a fact: compare what was adapted, not pickle's bytes
                row["payload"] = repr(pickle.loads(row["payload"]))
            out.append(tuple(row.values()))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_bulk_equals_row_by_row(lines, data):
    picked = data.draw(st.lists(st.one_of(st.sampled_from(lines), st.sampled_from(_HOSTILE), st.none(),
                                          st.binary(max_size=40)), min_size=1, max_size=120))
    # consecutive rows of one split (file, start), as Spark's text source gives them
    splits = data.draw(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 3)), min_size=1, max_size=4,
                                unique=True))
    rows, i = [], 0
    for n, (name, start) in enumerate(splits):
        take = len(picked) - i if n == len(splits) - 1 else data.draw(st.integers(0, len(picked) - i))
        rows.extend((name, start * 1000, v) for v in picked[i:i + take])
        i += take
    batches = _batches(rows, data.draw(st.integers(1, 50)))
    assert _rows(batches, bulk=True) == _rows(batches, bulk=False)


def test_the_bulk_reading_finds_the_facts(lines):
    rows = _rows(_batches([("a", 0, v) for v in lines], 64), bulk=True)
    facts = [r for r in rows if r[0] == 0]
    count = [r for r in rows if r[0] == 2]
    assert facts and len(count) == 1
    assert json.loads(count[0][-1])["lines"] == len(lines)


def test_every_hostile_line_between_resources(lines):
    rows = []
    for n, bad in enumerate(_HOSTILE + [None]):
        rows.extend([("a", 0, lines[n]), ("a", 0, bad)])
    rows.extend(("b", 0, v) for v in reversed(_HOSTILE))
    for size in (1, 3, len(rows)):
        batches = _batches(rows, size)
        assert _rows(batches, bulk=True) == _rows(batches, bulk=False)

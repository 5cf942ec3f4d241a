"""A Bulk Data server cannot fill the disk or hold the download forever: byte cap, free-disk reserve, deadline.

Runs against the small fake Bulk server of test_cohort_export (real HTTP on loopback)."""

from __future__ import annotations

from collections import namedtuple

import pytest

from milan_fhir._client import FhirClient
from milan_fhir._cohort import _export
from milan_fhir._cohort._export import bulk_export
from milan_fhir.errors import FhirServerError
from test_cohort_export import FakeBulkServer, export  # noqa: F401 - fixture


def _total(folder):
    """Bytes of the files the fake server lists in its manifest."""
    return sum(p.stat().st_size for p in folder.iterdir() if p.name.split("-")[0] in _export.EXPORT_TYPES)


def _run(server, dest, **kw):
    with FhirClient(server.base_url, retries=0) as client:
        return bulk_export(client, dest, sleep=lambda s: None, log=lambda m: None, **kw)


def test_a_generous_cap_downloads_everything(export, tmp_path):  # noqa: F811
    size = _total(export)
    with FakeBulkServer(export, pending_polls=0) as server:
        result = _run(server, tmp_path / "dl", max_bytes=size)
    assert sum(p.stat().st_size for p in result.files) == size


def test_the_byte_cap_stops_the_downloads_and_leaves_no_partial_file(export, tmp_path):  # noqa: F811
    size = _total(export)
    cap = size // 2
    with FakeBulkServer(export, pending_polls=0) as server:
        with pytest.raises(FhirServerError) as err:
            _run(server, tmp_path / "dl", max_bytes=cap)
    assert f"{cap:,} bytes" in str(err.value) and "max_bytes" in str(err.value)
    written = list((tmp_path / "dl").iterdir())
    # nothing half-written: only whole files, under their final names, and never more than the cap
    assert all(not p.name.startswith(".") for p in written)
    assert sum(p.stat().st_size for p in written) <= cap
    for p in written:
        assert p.read_bytes() == (export / _source_name(export, p)).read_bytes()


def _source_name(export, p):
    # downloads are named <Type>-<n>.ndjson in manifest order; the fake server lists sorted file names
    files = sorted(f for f in export.iterdir() if f.name.split("-")[0] in _export.EXPORT_TYPES)
    by_type: dict[str, list] = {}
    for f in files:
        by_type.setdefault(f.name.split("-")[0].split(".")[0], []).append(f.name)
    rtype, n = p.stem.rsplit("-", 1)
    return by_type[rtype][int(n) - 1]


def test_a_full_disk_stops_before_writing(export, tmp_path, monkeypatch):  # noqa: F811
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(_export.shutil, "disk_usage", lambda path: usage(10 << 30, (10 << 30) - (100 << 20), 100 << 20))
    with FakeBulkServer(export, pending_polls=0) as server:
        with pytest.raises(FhirServerError) as err:
            _run(server, tmp_path / "dl")
    assert "bytes would stay free" in str(err.value)
    assert list((tmp_path / "dl").iterdir()) == []


def test_the_reserve_can_be_lowered(export, tmp_path, monkeypatch):  # noqa: F811
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(_export.shutil, "disk_usage", lambda path: usage(10 << 30, 0, 100 << 20))
    with FakeBulkServer(export, pending_polls=0) as server:
        result = _run(server, tmp_path / "dl", min_free_bytes=1 << 20)
    assert result.files


def test_the_time_limit_covers_the_downloads(export, tmp_path, monkeypatch):  # noqa: F811
    clock = iter(range(0, 10_000, 5))  # every reading of the clock is 5 s later
    monkeypatch.setattr(_export.time, "monotonic", lambda: float(next(clock)))
    with FakeBulkServer(export, pending_polls=0) as server:
        with pytest.raises(FhirServerError) as err:
            _run(server, tmp_path / "dl", timeout=12.0)
    assert "time limit" in str(err.value)


def test_a_negative_cap_is_refused(tmp_path):
    with FhirClient("http://127.0.0.1:9/fhir", retries=0) as client:
        with pytest.raises(ValueError):
            bulk_export(client, tmp_path / "dl", max_bytes=-1, sleep=lambda s: None, log=lambda m: None)


@pytest.mark.parametrize("text, value", [("1048576", 1 << 20), ("500M", 500 << 20), ("2G", 2 << 30), ("2GiB", 2 << 30),
                                         ("1.5k", 1536), ("0", 0)])
def test_byte_counts_on_the_command_line(text, value):
    from milan_fhir._cli.cohort import _byte_count

    assert _byte_count(text) == value


@pytest.mark.parametrize("text", ["", "lots", "-1G", "nan", "inf", "1X"])
def test_bad_byte_counts_are_refused(text):
    import argparse

    from milan_fhir._cli.cohort import _byte_count

    with pytest.raises(argparse.ArgumentTypeError):
        _byte_count(text)


def test_cli_cohort_server_honours_max_download_bytes(export, tmp_path, capsys):  # noqa: F811
    from milan_fhir._cli import main

    with FakeBulkServer(export, pending_polls=0) as server:
        code = main(["cohort", "--server", server.base_url, "--as-of", "2026-06-30", "--out", str(tmp_path / "out"),
                     "--max-download-bytes", "10K", "--no-progress", "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "10,240 bytes" in err and "Traceback" not in err

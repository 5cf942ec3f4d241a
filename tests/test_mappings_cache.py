"""The default mappings' JSON cache (``mappings/_parsed.json``, issue 13: start-up): used only when it is the
parse of the files as they are, and then it gives the same mappings as parsing the YAML."""

from __future__ import annotations

import hashlib
import shutil

import orjson

from milan_fhir import _mappings
from milan_fhir._mappings import DEFAULT_FILES, PARSED_CACHE, load_mappings


def _yaml_only(monkeypatch):
    monkeypatch.setattr(_mappings, "_cached", lambda path, text: None)
    return load_mappings()


def test_the_shipped_cache_is_current():
    folder = _mappings._default_dir()
    cache = orjson.loads((folder / PARSED_CACHE).read_bytes())
    for name in DEFAULT_FILES:
        text = (folder / name).read_text(encoding="utf-8")
        assert cache["files"][name]["sha256"] == hashlib.sha256(text.encode("utf-8")).hexdigest(), (
            f"mappings/{PARSED_CACHE} is stale for {name} (still correct, only slower to start): run "
            "python -c 'from milan_fhir._mappings import write_parsed_cache; write_parsed_cache()'")


def test_cached_load_equals_the_yaml_parse(monkeypatch):
    cached = load_mappings()
    parsed = _yaml_only(monkeypatch)
    assert cached.fingerprint() == parsed.fingerprint()
    assert cached.version == parsed.version
    for section in _mappings.CODE_SECTIONS:
        assert cached.codes_of(section) == parsed.codes_of(section)
        assert cached.patterns_of(section) == parsed.patterns_of(section)
    assert cached.sites == parsed.sites and cached.rule_sets == parsed.rule_sets
    assert cached.text_nets == parsed.text_nets


def test_a_changed_file_is_read_from_its_yaml(tmp_path, monkeypatch):
    folder = tmp_path / "mappings"
    shutil.copytree(_mappings._default_dir(), folder)
    text = (folder / "codes.yaml").read_text(encoding="utf-8")
    assert "ki67_names: [ki-67, ki67, mib-1, mib1]" in text
    (folder / "codes.yaml").write_text(text.replace("ki67_names: [ki-67, ki67, mib-1, mib1]",
                                                    "ki67_names: [ki-67, ki67, mib-1, mib1, proliferationsindex]"))
    monkeypatch.setattr(_mappings, "_default_dir", lambda: folder)
    _mappings._parsed_cache.cache_clear()
    try:
        m = load_mappings()
        assert "proliferationsindex" in m.text_nets.ki67_names  # the edit counts: the stale entry was not used
        # and a cache written for the edited files is used again, with the same result
        _mappings.write_parsed_cache(folder)
        calls = []
        real = _mappings._cached
        monkeypatch.setattr(_mappings, "_cached", lambda p, t: calls.append(p.name) or real(p, t))
        again = load_mappings()
        assert calls == list(DEFAULT_FILES) and again.fingerprint() == m.fingerprint()
        assert all(real(folder / n, (folder / n).read_text(encoding="utf-8")) is not None for n in DEFAULT_FILES)
    finally:
        _mappings._parsed_cache.cache_clear()

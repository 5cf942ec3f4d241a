"""The project documents its own rules: docs/criteria.md (rules, sources, output contracts) and docs/codes.md
(generated from the mappings). These tests keep both honest: codes.md is regenerated and compared, criteria.md
must name every criterion, caution, rule-set parameter and literature figure the code and data use, and no file
of the project may point outside the repository."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from milan_fhir import _docs_codes
from milan_fhir._domain import CAUTION_CODES, CRITERIA, RuleSet
from milan_fhir._mappings import default_mappings, load_mappings

ROOT = Path(__file__).resolve().parent.parent
CRITERIA_DOC = ROOT / "docs" / "criteria.md"
CODES_DOC = ROOT / "docs" / "codes.md"


def test_codes_md_is_generated_from_the_mappings_and_in_sync():
    expected = _docs_codes.render(ROOT / "mappings")
    assert CODES_DOC.read_text(encoding="utf-8") == expected, (
        "docs/codes.md is out of date: run `python -m milan_fhir._docs_codes`"
    )


def test_codes_md_check_command(tmp_path):
    out = tmp_path / "codes.md"
    assert _docs_codes.main(["--out", str(out)]) == 0
    assert _docs_codes.main(["--check", "--out", str(out)]) == 0
    out.write_text(out.read_text() + "drift\n")
    assert _docs_codes.main(["--check", "--out", str(out)]) == 1


def test_codes_md_lists_every_code_of_every_section():
    text = CODES_DOC.read_text(encoding="utf-8")
    sections = re.split(r"^### `", text, flags=re.M)
    by_name = {s.split("`", 1)[0]: s for s in sections[1:]}
    m = default_mappings()
    assert m.codes, "no code sections loaded"
    for concept, entries in m.codes.items():
        assert concept in by_name, f"section {concept} missing from docs/codes.md"
        for e in entries:
            assert f"| {e.code} |" in by_name[concept] or f"| {e.code.replace('|', chr(92) + '|')} |" in by_name[concept], (
                concept, e.code)
    for key in m.sites:
        assert f"| `{key}` |" in by_name["sites"]
    for name in m.rule_sets:
        assert f"`{name}`" in by_name["rule_sets"]


def test_generator_renders_any_section_generically(tmp_path):
    (tmp_path / "codes.yaml").write_text(
        "# Extra codes of a new kind.\n"
        "brand_new_section:\n"
        "  - {system: loinc, code: 12345-6, display: Something new, level: U, source: a test, weight: 3}\n"
        "# Words, not codes.\n"
        "text_words: [metastasis, Metastase]\n"
        "aliases:\n"
        "  icd10gm: {canonical: http://hl7.org/fhir/sid/icd-10-cm, note: C-chapter only}\n"
        "free_text: one paragraph\n",
        encoding="utf-8",
    )
    (tmp_path / "zz-other.yaml").write_text("other_section:\n  a: 1\n", encoding="utf-8")
    out = _docs_codes.render(tmp_path)
    assert "### `brand_new_section`" in out and "Extra codes of a new kind." in out
    assert "| code | system | display | level | source | weight |" in out
    assert "| 12345-6 | loinc | Something new | U | a test | 3 |" in out
    assert "1 entries (1 U)." in out
    assert "`metastasis`, `Metastase`" in out
    assert "| `icd10gm` | http://hl7.org/fhir/sid/icd-10-cm | C-chapter only |" in out
    assert "one paragraph" in out
    assert "## zz-other" in out and "| `a` | 1 |" in out


def test_criteria_md_has_every_section_and_names_every_criterion_and_caution():
    text = CRITERIA_DOC.read_text(encoding="utf-8")
    for section in ("1", "1a", "1b", "1c", "1d", "2", "3", "3a", "4", "5", "6", "7"):
        assert re.search(rf"^## {section}\. ", text, re.M), f"docs/criteria.md lacks section {section}"
    for name in CRITERIA:
        assert f"### `{name}`" in text, name
    for code in CAUTION_CODES:
        assert f"| `{code}` |" in text, code


def test_criteria_md_documents_every_rule_set_parameter_with_its_values():
    text = CRITERIA_DOC.read_text(encoding="utf-8")
    table = text[text.index("| parameter | meaning |"):]
    params = [f for f in RuleSet.model_fields if f not in ("name", "version", "title", "source")]
    for field in params:
        assert f"| `{field}` |" in table, f"rule-set parameter {field} is not documented in docs/criteria.md §4"
    for field in ("burden_window_months", "resection_lead_months", "attribution_lead_months"):  # v2 parameters
        assert f"| `{field}` |" in table
    rules = default_mappings().rule_set("milan-net")
    row = next(line for line in table.splitlines() if line.startswith("| `age_max_years` |"))
    assert f"| {rules.age_max_years} |" in row


def test_criteria_md_cites_every_source_and_every_literature_figure():
    text = CRITERIA_DOC.read_text(encoding="utf-8")
    for cite in ("J Hepatol 2007;47:460-466", "Am J Transplant 2016;16(10):2892-2902", "10.1007/s11605-018-3973-9",
                 "Am J Transplant 2022;22(11):2598-2607", "Maspero", "Ruzzenente"):
        assert cite in text, cite
    m = default_mappings()
    for p in m.predictions:
        assert f"{p.percent:g} %" in text, f"literature figure {p.percent:g} % ({p.outcome}) not in docs/criteria.md"
        assert f"n={p.study.n}" in text
    for figure in ("93 %", "75 %", "n=48", "n=56"):
        assert figure in text and figure in m.mitigation


def test_no_project_file_points_outside_the_repository():
    needles = ("../" + "shared", "/work/" + "shared", "shared/" + "spec")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    offenders = []
    for name in files:
        path = ROOT / name
        if not path.is_file() or path.suffix in (".png", ".jar", ".gz") or "hapi-server/target" in name:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        offenders += [f"{name}: {n}" for n in needles if n in text]
    assert offenders == []


def test_readme_and_developers_point_to_the_docs():
    for doc in ("README.md", "DEVELOPERS.md"):
        text = (ROOT / doc).read_text(encoding="utf-8")
        assert "docs/criteria.md" in text and "docs/codes.md" in text, doc


def test_readme_rule_set_example_names_every_parameter_and_loads(tmp_path):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(# local-codes.yaml\n.*?)```", text, re.S)
    assert block, "README lost its local-codes.yaml example"
    data = yaml.safe_load(block.group(1))
    example = data["rule_sets"]["milan-net-55"]
    missing = [f for f in RuleSet.model_fields if f != "name" and f not in example]
    assert missing == [], f"README example lacks rule-set parameters {missing}"
    # load it with the parameters this version of RuleSet knows (the example may run ahead of the schema)
    data["rule_sets"]["milan-net-55"] = {k: v for k, v in example.items() if k in RuleSet.model_fields}
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert load_mappings(path).rule_set("milan-net-55").age_max_years == 55


@pytest.mark.parametrize("module", ["milan_fhir._docs_codes"])
def test_generator_runs_as_a_module(module, tmp_path):
    res = subprocess.run([sys.executable, "-m", module, "--check"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr

"""Spec v2 recognition data (codes.md): aliases, ICD-10 variants, patterns, the secondary set, the site tree,
text nets, schema checks and hospital layering of the new sections."""

from __future__ import annotations

import pytest

from milan_fhir._mappings import default_mappings, load_mappings
from milan_fhir.errors import MappingError

ICD = "http://hl7.org/fhir/sid/icd-10-cm"
WHO = "http://hl7.org/fhir/sid/icd-10"
GM = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"
GM_OLD = "http://fhir.de/CodeSystem/dimdi/icd-10-gm"
SNOMED = "http://snomed.info/sct"
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
CPT = "http://www.ama-assn.org/go/cpt"

#: codes.md (v2): the whole of mCODE SecondaryCancerDisorderVS, ICD-10-CM part, as listed there
SECONDARY_CM = """C77 C77.0 C77.1 C77.2 C77.3 C77.4 C77.5 C77.8 C77.9 C78 C78.0 C78.00 C78.01 C78.02 C78.1 C78.2 C78.3
C78.30 C78.39 C78.4 C78.5 C78.6 C78.7 C78.8 C78.80 C78.89 C79 C79.0 C79.00 C79.01 C79.02 C79.1 C79.10 C79.11 C79.19
C79.2 C79.3 C79.31 C79.32 C79.4 C79.40 C79.49 C79.5 C79.51 C79.52 C79.6 C79.60 C79.61 C79.62 C79.7 C79.70 C79.71
C79.72 C79.8 C79.81 C79.82 C79.89 C79.9 C7B C7B.0 C7B.00 C7B.01 C7B.02 C7B.03 C7B.04 C7B.09 C7B.1 C7B.8""".split()


@pytest.fixture(scope="module")
def m():
    return default_mappings()


def test_whole_secondary_set_is_listed_with_sites(m):
    listed = {e.code for e in m.codes_of("metastasis") if e.system == ICD}
    assert set(SECONDARY_CM) <= listed
    unknown = {"C79.9", "C7B.00", "C7B.8", "C7B.1", "C77", "C78", "C79", "C7B", "C7B.0"}
    for code in SECONDARY_CM:
        e = m.match("metastasis", ICD, code)
        if code in unknown:
            assert e.site == "unspecified", code
        elif code in ("C78.7", "C7B.02"):
            assert e.site == "liver"
        else:
            assert e.site not in (None, "unspecified", "liver", "from-body-site"), code
    assert m.site(m.match("metastasis", ICD, "C77.2").site).nodal_review
    assert m.site(m.match("metastasis", ICD, "C77.9").site).nodal_review
    assert not m.site(m.match("metastasis", ICD, "C77.0").site).nodal_review
    for code in ("C80.0", "R18.0", "J91.0"):
        assert m.match("metastasis", ICD, code) is not None


@pytest.mark.parametrize("system", ["urn:oid:2.16.840.1.113883.6.90", ICD])
def test_icd10cm_oid_and_no_dot(m, system):
    e = m.match("primary_net", system, "C7A012")
    assert e is not None and e.site == "ileum" and e.code == "C7A.012"


def test_snomed_loinc_icdo3_oids(m):
    assert m.match("metastasis", "urn:oid:2.16.840.1.113883.6.96", "94381002").site == "liver"
    assert m.match("ki67", "urn:oid:2.16.840.1.113883.6.1", "29593-1") is not None
    assert m.match("morphology", "urn:oid:2.16.840.1.113883.6.43.1", "8246/3").high_grade


@pytest.mark.parametrize("system", [WHO, GM, GM_OLD])
def test_who_and_gm_share_cm_codes_except_c7a_c7b(m, system):
    assert m.match("metastasis", system, "C78.7").site == "liver"
    assert m.match("metastasis", system, "C79.88").site == "other_extrahepatic"  # 5-char under 4-char parent
    assert m.match("metastasis", system, "C78.7+").site == "liver"  # trailing mark ignored
    assert m.match("metastasis", system, "C78.0†").site == "lung"
    assert m.match("metastasis", system, "C7B.02") is None
    assert m.match("primary_net", system, "C7A.012") is None
    # C80.0 differs: an unknown primary there, disseminated disease in ICD-10-CM
    assert m.match("metastasis", system, "C80.0") is None
    assert m.match("primary_net", system, "C80.0").site == "unknown_primary"
    assert m.match("primary_net", ICD, "C80.0") is None
    # labels cite the coding's own system
    assert m.match("metastasis", system, "C79.88").label.startswith(("ICD-10 ", "ICD-10-GM "))


def test_patterns_and_exact_first(m):
    assert m.match("primary_net_by_morphology", ICD, "C16.0").site == "gastric_cardia"
    assert m.match("primary_net_by_morphology", ICD, "C16.3").site == "stomach"
    assert m.match("other_malignancy", ICD, "C50.911") is not None
    assert m.match("other_malignancy", GM, "C61") is not None
    for code in ("C7A.012", "C7B.02", "C77.2", "C78.7", "C79.9", "C80.1"):
        assert m.match("other_malignancy", ICD, code) is None, code
    assert m.match("other_malignancy", ICD, "C96.9") is not None
    assert m.match("other_malignancy", ICD, "D13.6") is None
    assert m.match("prior_malignancy", ICD, "Z85.3") is not None
    assert m.match("liver_transplant_status", GM, "Z94.4") is not None
    assert m.match("liver_transplant", "http://fhir.de/CodeSystem/bfarm/ops", "5-504.0") is not None
    assert m.match("primary_resection", CPT, "44145").sites == ("colon",)
    assert m.match("primary_resection", CPT, "44149") is None and m.patterns_of("primary_resection") == []
    morph = m.match("morphology", ICDO3, "8140/3")
    assert morph is not None and not morph.net
    # pattern entries are not search tokens
    assert all(e.match == "exact" for e in m.codes_of("other_malignancy"))
    assert {e.code for e in m.patterns_of("other_malignancy")} == {"C00-C76", "C81-C96"}


def test_morphology_v2_meanings(m):
    nos = m.match("morphology", ICDO3, "8240/3")
    assert nos.net and nos.grade is None and not nos.high_grade
    g2plus = m.match("morphology", ICDO3, "8249/3")
    assert (g2plus.grade, g2plus.at_least) == (2, True)
    minen = m.match("morphology", ICDO3, "8154/3")
    assert minen.high_grade and minen.carcinoma


def test_site_tree(m):
    assert m.site_path("terminal_ileum") == ("terminal_ileum", "ileum", "small_intestine")
    assert m.site_path("sigmoid_colon") == ("sigmoid_colon", "colon", "large_intestine")
    assert m.site_path("appendix") == ("appendix",)
    assert m.site_path("rectum") == ("rectum", "large_intestine")
    assert m.site("large_intestine").drainage == "review"
    assert m.site("gastric_cardia").drainage == "review"
    assert "hepatic" in m.site("liver").note


def test_rule_set_v2_parameters(m):
    for name in ("milan-net", "milan-2007"):
        rs = m.rule_set(name)
        assert (rs.burden_window_months, rs.resection_lead_months, rs.attribution_lead_months) == (6, 6, 6)
    assert m.rule_set("milan-net").open_grade_reading == "exact"
    assert m.rule_set("milan-2007").open_grade_reading == "open"


def test_hospital_layer_adds_aliases_words_sites(tmp_path):
    f = tmp_path / "local.yaml"
    f.write_text(
        "system_aliases:\n  'http://hospital.example/icd': icd10cm\n"
        "text_nets:\n  metastasis_words: [Absiedlung]\n"
        "sites:\n  lower_rectum: {label: lower rectum, parent: rectum, drainage: systemic}\n"
        "metastasis:\n  - {system: icd10cm, code: C79.99, display: local, site: bone, level: U, source: local}\n",
        encoding="utf-8",
    )
    m = load_mappings(f)
    assert m.match("metastasis", "http://hospital.example/icd", "C78.7").site == "liver"
    assert "absiedlung" in m.text_nets.metastasis_words and "metastasis" in m.text_nets.metastasis_words
    assert m.site_path("lower_rectum") == ("lower_rectum", "rectum", "large_intestine")
    assert m.match("metastasis", ICD, "C79.99").site == "bone"
    assert m.fingerprint() != default_mappings().fingerprint()


@pytest.mark.parametrize("text, problem", [
    ("metastasis:\n  - {system: icd10cm, code: C77, match: glob, display: x, level: U, source: x}\n", "match"),
    ("metastasis:\n  - {system: icd10cm, code: C77, match: range, display: x, level: U, source: x}\n", "LOW-HIGH"),
    ("sites:\n  x: {label: x, parent: nowhere, drainage: portal}\n", "nowhere"),
    ("diagnosis_certainty:\n  G: maybe\n", "certainty"),
    ("text_nets:\n  metastasis_words: 3\n", "metastasis_words"),
    ("icd10_variants:\n  x: {label: x}\n", "shares"),
])
def test_schema_errors_name_the_entry(tmp_path, text, problem):
    f = tmp_path / "bad.yaml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(MappingError) as err:
        load_mappings(f)
    assert problem in str(err.value)
    if problem != "nowhere":  # a site's parent may come from a later layer: checked across files, named by entry
        assert "bad.yaml" in str(err.value)

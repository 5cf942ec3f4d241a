"""One registry of words (milan_fhir/_writers/_words.py): every criterion and caution of the domain has its words
there, and no writer or report keeps a second copy."""

from __future__ import annotations

from pathlib import Path

from milan_fhir._domain import CAPPING_CAUTIONS, CAUTION_CODES, CRITERIA, EXCLUDING_CAUTIONS, Caution, Status, Verdict
from milan_fhir._mappings import default_mappings
from milan_fhir._writers import _words

PKG = Path(__file__).resolve().parent.parent / "milan_fhir"


def test_every_criterion_and_caution_has_its_words():
    assert set(_words.CRITERION_LABELS) == set(CRITERIA)
    assert set(_words.CAUTION_LABELS) == set(CAUTION_CODES)
    assert set(_words.STATUS_WORDS) == {s.value for s in Status}
    assert set(_words.VERDICT_WORDS) == set(_words.VERDICT_DISPLAY) == {v.value for v in Verdict}
    for rules in default_mappings().rule_sets.values():
        phrases = _words.criterion_phrases(rules)
        assert list(phrases) == list(CRITERIA) and all(phrases.values())
    assert "below 10 %" in _words.criterion_phrase("low_grade", default_mappings().rule_set("milan-net"))
    assert "G1 or G2" in _words.criterion_phrase("low_grade", default_mappings().rule_set("milan-2007"))


def test_caution_effects_follow_the_domain_sets():
    for code in CAUTION_CODES:
        effect = _words.caution_effect(code)
        assert effect == ("excludes" if code in EXCLUDING_CAUTIONS else "caps" if code in CAPPING_CAUTIONS else "informs")
        assert effect in _words.CAUTION_EFFECTS
    assert _words.caution_effect("prior-malignancy") == "informs"


def test_ordering_helpers():
    assert _words.ordered_criteria(reversed(CRITERIA)) == list(CRITERIA)
    assert _words.ordered_criteria(["zeta", *CRITERIA, "alpha"])[-2:] == ["alpha", "zeta"]
    cautions = [Caution(code=c, reason="r") for c in reversed(CAUTION_CODES)] + [Caution(code="new-one", reason="r")]
    assert [c.code for c in _words.ordered_cautions(cautions)] == [*CAUTION_CODES, "new-one"]


def test_no_writer_keeps_its_own_copy_of_the_words():
    """The labels live in _words.py only: a new criterion must not need edits in every writer."""
    sources = {p: p.read_text(encoding="utf-8") for p in
               [*(PKG / "_writers").glob("*.py"), PKG / "_cohort" / "_report.py", PKG / "_cohort" / "_tally.py",
                PKG / "_service" / "_cards.py"]
               if p.name != "_words.py"}
    words = [*_words.CRITERION_LABELS.values(), *_words.CAUTION_LABELS.values(), "not met\"", "stable disease at least",
             "birth date", "primary not portal-drained", "within Milan\""]
    for path, text in sources.items():
        for w in words:
            assert f'"{w}' not in text, f"{path.name} hard-codes {w!r}; take it from _writers/_words.py"


def test_every_step_of_the_cohort_flow_has_its_words():
    from milan_fhir._cohort._tally import CAUTION_STEPS

    steps = [step for step, _, _ in CAUTION_STEPS]
    assert set(_words.CAUTION_STEP_LABELS) == set(_words.CAUTION_STEP_SHORT) == set(steps)
    assert sorted(c for _, codes, _ in CAUTION_STEPS for c in codes) == sorted(CAUTION_CODES)


def test_the_card_words_cover_every_criterion():
    # the four per-criterion tables of the registry, each keyed by exactly the criteria of the domain
    for table in (_words.CRITERION_LABELS, _words._PHRASES, _words._FAILED_SHORT, _words._MISSING_SHORT):
        assert set(table) == set(CRITERIA)
    rules = default_mappings().rule_set("milan-net")
    for name in CRITERIA:
        assert _words.criterion_missing_short(name) != name
        assert _words.criterion_failed_short(name, rules) != name
    assert _words.criterion_failed_short("age", rules) == "age > 60 years"
    assert set(_words.STATUS_ICONS) == {s.value for s in Status}
    assert set(_words.VERDICT_SHORT) == {v.value for v in Verdict}


#: string constants equal to a criterion name outside the registry and the criterion's own module, and why each
#: is not about the criterion (a mapping concept or a fact of the same name)
_NOT_THE_CRITERION = {
    ("_adapters/__init__.py", "liver_burden"): "the mapping concept liver_burden (codes.yaml)",
    ("_adapters/_observation.py", "liver_burden"): "the mapping concept liver_burden (codes.yaml)",
    ("_mappings.py", "liver_burden"): "the codes.yaml section liver_burden",
    ("_adapters/_patient.py", "age"): "the patient's age as a fact",
    ("_criteria/_subgroups.py", "low_grade"): "the grade_1 subgroup needs low_grade met (criteria.md §5)",
}


def test_a_criterion_is_named_only_by_the_registry_and_its_own_module():
    """What DEVELOPERS.md "Adding a criterion" promises: its module, _domain.CRITERIA, _writers/_words.py and
    tests; no other module of the package names a criterion (so none needs an edit for a new one)."""
    import ast

    found = set()
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).as_posix()
        if rel in ("_domain.py", "_writers/_words.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [node.value]
            elif isinstance(node, ast.alias):
                names = [node.name.rpartition(".")[2]]
            for name in names:
                if name in CRITERIA and rel != f"_criteria/{name}.py":
                    found.add((rel, name))
    assert found == set(_NOT_THE_CRITERION), sorted(found ^ set(_NOT_THE_CRITERION))

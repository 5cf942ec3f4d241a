"""Loading the code mappings, site table, rule sets and literature (``mappings/*.yaml``).

The defaults ship inside the package (``milan_fhir/_default_mappings`` in a wheel; ``mappings/`` in a checkout).
A hospital layers its own YAML files on top: list entries are added to ours, mapping entries (sites, rule
sets, studies) are added or replace ours key by key. Every file is schema-checked on load; an error names the
file, the entry and the problem.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ._domain import RuleSet
from .errors import MappingError, RuleSetError

__all__ = ["CodeEntry", "Site", "Mappings", "load_mappings", "default_mappings", "normalise_code"]

DEFAULT_FILES = ("codes.yaml", "sites.yaml", "rule-sets.yaml", "literature.yaml")

#: Concept sections of codes.yaml: lists of code entries.
CODE_SECTIONS = (
    "primary_net",
    "primary_net_by_morphology",
    "generic_cancer",
    "morphology",
    "body_sites",
    "metastasis",
    "ki67",
    "liver_burden",
    "disease_status",
    "extrahepatic_staging",
    "histologic_grade",
    "liver_metastasis_count",
    "largest_liver_metastasis",
    "disease_status_values",
    "presence_values",
    "grade_values",
    "primary_resection",
    "liver_resection_minor",
    "liver_resection_major",
    "liver_transplant",
)

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
_ICD_NO_DOT = re.compile(r"^([A-Z][0-9][0-9A-Z])([0-9A-Z]+)$")


def normalise_code(system: str | None, code: str) -> str:
    """ICD-10-CM written without its dot (``C7A012``) is read with it (``C7A.012``); others as written."""
    code = code.strip()
    if system == ICD10CM:
        code = code.upper()
        m = _ICD_NO_DOT.match(code)
        if m:
            return f"{m.group(1)}.{m.group(2)}"
    return code


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CodeEntry(_Strict):
    """One code of a concept section, as written in codes.yaml (``system`` resolved to its URI)."""

    system: str
    code: str
    display: str
    level: Literal["V", "V2", "U"]
    source: str
    site: str | None = None
    fallback_site: str | None = None
    sites: tuple[str, ...] = ()
    net: bool = False
    grade: Literal[1, 2, 3] | None = None
    high_grade: bool = False
    value: str | int | None = None

    @field_validator("code", mode="before")
    @classmethod
    def _code_is_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, (int, float)) else v

    @property
    def verified(self) -> bool:
        return self.level != "U"

    @property
    def label(self) -> str:
        """``ICD-10-CM C7A.012`` style label."""
        return f"{_SYSTEM_LABELS.get(self.system, self.system)} {self.code}"


class Site(_Strict):
    label: str
    drainage: Literal["portal", "systemic", "review", "unknown"]
    group: str | None = None
    note: str | None = None


class _Study(_Strict):
    citation: str
    cohort: str
    n: int


class _Prediction(_Strict):
    outcome: str
    percent: float
    years: int
    study: str
    when: Literal[
        "always", "grade_1", "minor_liver_resection", "liver_metastases_1_to_2", "largest_metastasis_below_3cm"
    ]


class _MappingSet(_Strict):
    name: str
    version: str


_SYSTEM_LABELS = {
    "http://snomed.info/sct": "SNOMED",
    "http://loinc.org": "LOINC",
    ICD10CM: "ICD-10-CM",
    "http://terminology.hl7.org/CodeSystem/icd-o-3": "ICD-O-3",
    "http://www.ama-assn.org/go/cpt": "CPT",
    "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl": "NCIt",
    "http://milan-fhir.org/fhir/CodeSystem/milan-net": "milan-net",
}

_TOP_KEYS = set(CODE_SECTIONS) | {
    "mapping_set",
    "systems",
    "extensions",
    "sites",
    "rule_sets",
    "default_rule_set",
    "studies",
    "predictions",
    "mitigation",
}


@dataclass(frozen=True)
class Study:
    key: str
    citation: str
    cohort: str
    n: int


@dataclass(frozen=True)
class Prediction:
    outcome: str
    percent: float
    years: int
    study: Study
    when: str


@dataclass
class Mappings:
    """All mapping data, merged from the default files and any layered ones.

    Look codes up with :meth:`match`; read sites with :meth:`site`, rule sets with :meth:`rule_set`.
    """

    versions: list[str] = field(default_factory=list)  # "name@version" of each file set layered
    files: list[str] = field(default_factory=list)
    systems: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)
    codes: dict[str, list[CodeEntry]] = field(default_factory=dict)
    sites: dict[str, Site] = field(default_factory=dict)
    rule_sets: dict[str, RuleSet] = field(default_factory=dict)
    default_rule_set: str = "milan-net"
    studies: dict[str, Study] = field(default_factory=dict)
    predictions: list[Prediction] = field(default_factory=list)
    mitigation: str = ""
    _index: dict[str, dict[tuple[str, str], CodeEntry]] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ look-ups
    @property
    def version(self) -> str:
        """The mapping version results record: every layered set, ``+``-joined."""
        return "+".join(self.versions)

    def match(self, concept: str, system: str | None, code: str | None) -> CodeEntry | None:
        """The entry of ``concept`` for one coding, or None."""
        if not code or not system:
            return None
        return self._index.get(concept, {}).get((system, normalise_code(system, code)))

    def match_any(self, concept: str, codings: Iterable[tuple[str | None, str | None]]) -> CodeEntry | None:
        """The first entry of ``concept`` matched by any of the codings."""
        for system, code in codings:
            hit = self.match(concept, system, code)
            if hit is not None:
                return hit
        return None

    def classify(
        self, concepts: Iterable[str], codings: Iterable[tuple[str | None, str | None]]
    ) -> tuple[str, CodeEntry] | None:
        """The first of ``concepts`` (in order) that any of the codings matches, with its entry; else None."""
        pairs = list(codings)
        for concept in concepts:
            hit = self.match_any(concept, pairs)
            if hit is not None:
                return concept, hit
        return None

    def codes_of(self, concept: str) -> list[CodeEntry]:
        return list(self.codes.get(concept, []))

    def site(self, key: str) -> Site:
        return self.sites[key]

    def rule_set(self, name: str | None = None) -> RuleSet:
        name = name or self.default_rule_set
        try:
            return self.rule_sets[name]
        except KeyError:
            known = ", ".join(sorted(self.rule_sets))
            raise RuleSetError(f"unknown rule set {name!r} (known: {known})") from None

    def fingerprint(self) -> str:
        """A short hash of all mapping content, for input fingerprints."""
        h = hashlib.sha256()
        for concept in sorted(self.codes):
            for e in self.codes[concept]:
                h.update(f"{concept}|{e.system}|{e.code}|{e.site}|{e.sites}|{e.grade}|{e.high_grade}|{e.value}\n".encode())
        for k in sorted(self.sites):
            h.update(f"{k}|{self.sites[k].drainage}|{self.sites[k].group}\n".encode())
        return h.hexdigest()[:16]

    # ------------------------------------------------------------------ building
    def _layer(self, data: Any, file: str) -> None:
        if not isinstance(data, dict):
            raise MappingError("the file must hold a YAML mapping of sections", file=file)
        unknown = set(data) - _TOP_KEYS
        if unknown:
            raise MappingError(
                f"unknown section(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_TOP_KEYS))}", file=file
            )
        self.files.append(file)
        if "mapping_set" in data:
            ms = _validate(_MappingSet, data["mapping_set"], file, "mapping_set")
            self.versions.append(f"{ms.name}@{ms.version}")
        for key in ("systems", "extensions"):
            if key in data:
                section = data[key]
                if not isinstance(section, dict) or not all(isinstance(v, str) for v in section.values()):
                    raise MappingError(f"{key} must map names to URIs", file=file, entry=key)
                getattr(self, key).update(section)
        for concept in CODE_SECTIONS:
            if concept not in data:
                continue
            entries = data[concept]
            if not isinstance(entries, list):
                raise MappingError("must be a list of code entries", file=file, entry=concept)
            for i, raw in enumerate(entries):
                where = f"{concept}[{i}]"
                if isinstance(raw, dict) and "system" in raw:
                    raw = {**raw, "system": self.systems.get(str(raw["system"]), raw["system"])}
                    if not str(raw["system"]).startswith(("http://", "https://", "urn:")):
                        raise MappingError(
                            f"system {raw['system']!r} is neither a name in `systems` nor a URI", file=file, entry=where
                        )
                entry = _validate(CodeEntry, raw, file, where)
                entry = entry.model_copy(update={"code": normalise_code(entry.system, entry.code)})
                self.codes.setdefault(concept, []).append(entry)
                self._index.setdefault(concept, {})[(entry.system, entry.code)] = entry
        if "sites" in data:
            if not isinstance(data["sites"], dict):
                raise MappingError("must map site keys to site entries", file=file, entry="sites")
            for key, raw in data["sites"].items():
                self.sites[str(key)] = _validate(Site, raw, file, f"sites.{key}")
        if "rule_sets" in data:
            if not isinstance(data["rule_sets"], dict):
                raise MappingError("must map rule-set names to parameters", file=file, entry="rule_sets")
            for name, raw in data["rule_sets"].items():
                base = self.rule_sets.get(str(name))
                merged = {**(base.model_dump() if base else {}), **(raw or {}), "name": str(name)}
                self.rule_sets[str(name)] = _validate(RuleSet, merged, file, f"rule_sets.{name}")
        if "default_rule_set" in data:
            self.default_rule_set = str(data["default_rule_set"])
        if "studies" in data:
            for key, raw in (data["studies"] or {}).items():
                s = _validate(_Study, raw, file, f"studies.{key}")
                self.studies[str(key)] = Study(str(key), s.citation, s.cohort, s.n)
        if "predictions" in data:
            preds = data["predictions"]
            if not isinstance(preds, list):
                raise MappingError("must be a list", file=file, entry="predictions")
            for i, raw in enumerate(preds):
                p = _validate(_Prediction, raw, file, f"predictions[{i}]")
                if p.study not in self.studies:
                    raise MappingError(f"unknown study {p.study!r}", file=file, entry=f"predictions[{i}]")
                if not 0 <= p.percent <= 100:
                    raise MappingError("percent must be between 0 and 100", file=file, entry=f"predictions[{i}]")
                self.predictions.append(Prediction(p.outcome, p.percent, p.years, self.studies[p.study], p.when))
        if "mitigation" in data:
            self.mitigation = str(data["mitigation"])

    def _check(self) -> None:
        """Cross-file checks: every site named by a code exists; the default rule set exists."""
        for concept, entries in self.codes.items():
            for e in entries:
                for s in (e.site, e.fallback_site, *e.sites):
                    if s and s not in ("from-body-site", "unspecified") and s not in self.sites:
                        raise MappingError(
                            f"site {s!r} is not defined in any sites section", entry=f"{concept} {e.label}"
                        )
        if self.default_rule_set not in self.rule_sets:
            raise MappingError(f"default_rule_set {self.default_rule_set!r} is not defined")


def _validate(model: type[BaseModel], raw: Any, file: str, entry: str) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}" for err in exc.errors()
        )
        raise MappingError(problems, file=file, entry=entry) from None


def _default_dir() -> Path:
    packaged = resources.files("milan_fhir") / "_default_mappings"
    if packaged.is_dir():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parent.parent / "mappings"
    if checkout.is_dir():
        return checkout
    raise MappingError("the default mappings are missing from the installation (milan_fhir/_default_mappings)")


#: libyaml's safe loader when PyYAML was built with it (about 10x faster: every process start loads the mappings)
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    try:
        return yaml.load(text, Loader=_SAFE_LOADER) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise MappingError(f"not valid YAML{where}: {getattr(exc, 'problem', exc)}", file=str(path)) from None


def load_mappings(*layers: str | Path, defaults: bool = True) -> Mappings:
    """Load the default mappings, then each layered file (or folder of ``*.yaml``) in order."""
    m = Mappings()
    paths: list[Path] = []
    if defaults:
        base = _default_dir()
        paths.extend(base / name for name in DEFAULT_FILES)
    for layer in layers:
        p = Path(layer)
        if p.is_dir():
            paths.extend(sorted(p.glob("*.yaml")) + sorted(p.glob("*.yml")))
        elif p.exists():
            paths.append(p)
        else:
            raise MappingError("no such mapping file", file=str(p))
    for p in paths:
        m._layer(_read_yaml(p), str(p))
    m._check()
    return m


@lru_cache(maxsize=1)
def default_mappings() -> Mappings:
    """The default mappings, loaded once per process."""
    return load_mappings()

"""Loading the code mappings, site table, rule sets and literature (``mappings/*.yaml``).

The defaults ship inside the package (``milan_fhir/_default_mappings`` in a wheel; ``mappings/`` in a checkout).
A hospital layers its own YAML files on top: list entries are added to ours, mapping entries (sites, rule
sets, studies) are added or replace ours key by key. Every file is schema-checked on load; an error names the
file, the entry and the problem.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field, fields
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Literal, Mapping

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ._domain import RuleSet
from .errors import MappingError, RuleSetError

__all__ = ["CodeEntry", "Site", "TextNets", "Mappings", "load_mappings", "default_mappings", "normalise_code"]

DEFAULT_FILES = ("codes.yaml", "sites.yaml", "rule-sets.yaml", "literature.yaml")

#: Concept sections of codes.yaml: lists of code entries.
CODE_SECTIONS = (
    "primary_net",
    "primary_net_by_morphology",
    "generic_cancer",
    "other_malignancy",
    "prior_malignancy",
    "liver_transplant_status",
    "morphology",
    "body_sites",
    "topography_sites",
    "metastasis",
    "ki67",
    "liver_burden",
    "disease_status",
    "extrahepatic_staging",
    "histologic_grade",
    "morphology_observation",
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
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
_ICD_NO_DOT = re.compile(r"^([A-Z][0-9][0-9A-Z])([0-9A-Z]+)$")
#: ICD-10-GM marks (primary/secondary code, additional code): a trailing ``+ * ! †`` is ignored (codes.md)
_ICD_MARKS = "+*!†"
_CODE_MAX = 64  # a code longer than this is not a code of any mapped system: never matched, never pattern-scanned
MEMO_MAX = 50_000  # entries per memo (Mappings.memo): a cohort may see many distinct codings


def normalise_code(system: str | None, code: str, *, icd: bool = False) -> str:
    """ICD-10 codes written without their dot (``C7A012``) are read with it (``C7A.012``), upper case, without a
    trailing ``+ * ! †``; others as written (stripped). ``icd``: treat ``system`` as an ICD-10 system."""
    code = code.strip()
    if icd or system == ICD10CM:
        code = code.upper().rstrip(_ICD_MARKS).rstrip()
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
    at_least: bool = False
    high_grade: bool = False
    carcinoma: bool = False
    requires_link: bool = False
    value: str | int | None = None
    #: (v2) exact (default), range (``C00-C76``: the code's leading characters lie between the bounds), prefix
    #: (``Z85``), suffix (``/3``); an exact entry always wins over a pattern
    match: Literal["exact", "range", "prefix", "suffix"] = "exact"

    @field_validator("match")
    @classmethod
    def _known_match(cls, v: Any) -> Any:
        return v

    def covers(self, code: str) -> bool:
        """Whether a (normalised) code falls under this pattern entry."""
        if self.match == "prefix":
            return code.startswith(self.code)
        if self.match == "suffix":
            return code.endswith(self.code)
        if self.match == "range":
            lo, _, hi = self.code.partition("-")
            head = code[: len(lo)]
            return len(head) == len(lo) and lo <= head <= hi
        return code == self.code

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
    parent: str | None = None  # the site containing it on the site tree (codes.md v2)
    nodal_review: bool = False  # a metastasis here needs review (regional nodes removed with the primary?)


class _Variant(_Strict):
    """A WHO ICD-10 / ICD-10-GM system: shares ``shares``' codes except ``not_shared`` (codes or categories)."""

    label: str
    shares: str
    not_shared: tuple[str, ...] = ()


class TextNets(_Strict):
    """(v2) Words of the text safety nets (codes.md): lower case; a phrase is a list of consecutive words."""

    metastasis_words: tuple[str, ...] = ()
    metastasis_word_suffixes: tuple[str, ...] = ()
    metastasis_phrases: tuple[tuple[str, ...], ...] = ()
    other_malignancy_words: tuple[str, ...] = ()
    exclusion_phrases: tuple[tuple[str, ...], ...] = ()
    exclusion_code_prefixes: tuple[str, ...] = ()
    ki67_names: tuple[str, ...] = ()

    def merged(self, other: "TextNets") -> "TextNets":
        out = {}
        for name in type(self).model_fields:
            mine, theirs = getattr(self, name), getattr(other, name)
            out[name] = tuple(dict.fromkeys((*mine, *theirs)))
        return TextNets(**out)


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
    "http://hl7.org/fhir/sid/icd-10": "ICD-10",
    "http://fhir.de/CodeSystem/bfarm/icd-10-gm": "ICD-10-GM",
    "http://fhir.de/CodeSystem/dimdi/icd-10-gm": "ICD-10-GM",
    "http://fhir.de/CodeSystem/bfarm/ops": "OPS",
    "http://terminology.hl7.org/CodeSystem/icd-o-3": "ICD-O-3",
    "http://www.ama-assn.org/go/cpt": "CPT",
    "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl": "NCIt",
    "http://milan-fhir.org/fhir/CodeSystem/milan-net": "milan-net",
}

_TOP_KEYS = set(CODE_SECTIONS) | {
    "mapping_set",
    "systems",
    "system_aliases",
    "icd10_variants",
    "diagnosis_certainty",
    "text_nets",
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


def _read_only(table: Mapping[Any, Any] | None) -> Mapping[Any, Any]:
    """A read-only view of a copy of ``table`` (a caller holding the original cannot change it either)."""
    return MappingProxyType(dict(table or {}))


@dataclass(frozen=True)
class Mappings:
    """All mapping data, merged from the default files and any layered ones; read-only once built.

    Every table is a read-only view (:class:`types.MappingProxyType`), every list a tuple and every entry a frozen
    model, so the object :func:`default_mappings` shares cannot be changed by a caller; :func:`load_mappings`
    builds a new one for every set of layers. Look codes up with :meth:`match`; read sites with :meth:`site`,
    rule sets with :meth:`rule_set`.
    """

    versions: tuple[str, ...] = ()  # "name@version" of each file set layered
    files: tuple[str, ...] = ()
    systems: Mapping[str, str] = field(default_factory=dict)
    extensions: Mapping[str, str] = field(default_factory=dict)
    codes: Mapping[str, tuple[CodeEntry, ...]] = field(default_factory=dict)
    sites: Mapping[str, Site] = field(default_factory=dict)
    rule_sets: Mapping[str, RuleSet] = field(default_factory=dict)
    default_rule_set: str = "milan-net"
    studies: Mapping[str, Study] = field(default_factory=dict)
    predictions: tuple[Prediction, ...] = ()
    mitigation: str = ""
    #: (v2) alias system URI -> canonical URI (OIDs of SNOMED CT, LOINC, ICD-10-CM, ICD-O-3)
    system_aliases: Mapping[str, str] = field(default_factory=dict)
    #: (v2) WHO ICD-10 / ICD-10-GM system URI -> how it shares ICD-10-CM codes
    icd10_variants: Mapping[str, _Variant] = field(default_factory=dict)
    #: (v2) ICD-10-GM Diagnosesicherheit code -> confirmed | suspected | refuted | history
    diagnosis_certainty: Mapping[str, str] = field(default_factory=dict)
    text_nets: TextNets = field(default_factory=TextNets)
    # derived from ``codes`` (exact entries by coding; pattern entries in order) and a bounded look-up cache
    _index: Mapping[str, Mapping[tuple[str, str], CodeEntry]] = field(init=False, repr=False, compare=False)
    _patterns: Mapping[str, tuple[CodeEntry, ...]] = field(init=False, repr=False, compare=False)
    _match_cache: dict[tuple[str, str, str], CodeEntry | None] = field(init=False, repr=False, compare=False)
    _memos: dict[str, dict[Any, Any]] = field(init=False, repr=False, compare=False)
    _fingerprint: list[str] = field(init=False, repr=False, compare=False)  # computed once (one per RA)

    def __post_init__(self) -> None:
        put = object.__setattr__  # frozen: the fields are set once, here, to their read-only forms
        for name in ("systems", "extensions", "sites", "rule_sets", "studies", "system_aliases", "icd10_variants",
                     "diagnosis_certainty"):
            put(self, name, _read_only(getattr(self, name)))
        put(self, "codes", MappingProxyType({k: tuple(v) for k, v in self.codes.items()}))
        for name in ("versions", "files", "predictions"):
            put(self, name, tuple(getattr(self, name)))
        index: dict[str, dict[tuple[str, str], CodeEntry]] = {}
        patterns: dict[str, list[CodeEntry]] = {}
        for concept, entries in self.codes.items():
            for entry in entries:
                if entry.match == "exact":
                    index.setdefault(concept, {})[(entry.system, entry.code)] = entry
                else:
                    patterns.setdefault(concept, []).append(entry)
        put(self, "_index", MappingProxyType({k: MappingProxyType(v) for k, v in index.items()}))
        put(self, "_patterns", MappingProxyType({k: tuple(v) for k, v in patterns.items()}))
        put(self, "_match_cache", {})
        put(self, "_memos", {})
        put(self, "_fingerprint", [])

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its fields in plain form (for worker processes); rebuilt read-only on the other side."""
        state = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        plain = {k: dict(v) if isinstance(v, MappingProxyType) else v for k, v in state.items()}
        return (_rebuild, (plain,))

    # ------------------------------------------------------------------ look-ups
    @property
    def version(self) -> str:
        """The mapping version results record: every layered set, ``+``-joined."""
        return "+".join(self.versions)

    def canonical_system(self, system: str) -> str:
        """The system URI an alias stands for (``urn:oid:2.16.840.1.113883.6.96`` -> SNOMED CT), else itself."""
        return self.system_aliases.get(system, system)

    def is_icd10(self, system: str) -> bool:
        system = self.canonical_system(system)
        return system == ICD10CM or system in self.icd10_variants

    def match(self, concept: str, system: str | None, code: str | None) -> CodeEntry | None:
        """The entry of ``concept`` for one coding, or None (codes.md v2: aliases, ICD-10 variants, patterns).

        A hit through an alias, a variant or a pattern is returned as a copy carrying the coding's own system
        and code, so that results cite what the data says (``ICD-10-GM C79.88``).
        """
        if not code or not system or not isinstance(code, str) or len(code) > _CODE_MAX:
            return None
        index = self._index.get(concept)
        if index is not None:
            hit = index.get((system, code))
            if hit is not None:
                return hit
        key = (concept, system, code)
        try:
            return self._match_cache[key]
        except KeyError:
            pass
        hit = self._match_slow(concept, system, code)
        if len(self._match_cache) < 50_000:  # bounded: a cohort sees many distinct codes
            self._match_cache[key] = hit
        return hit

    def memo(self, name: str) -> dict[Any, Any]:
        """A cache of this mapping set's own, for what an adapter derives from codes or texts alone (the same
        codings recur over a cohort). Callers keep it bounded (:data:`MEMO_MAX` entries)."""
        cache = self._memos.get(name)
        if cache is None:
            cache = self._memos[name] = {}
        return cache

    def _match_slow(self, concept: str, system: str, code: str) -> CodeEntry | None:
        canon = self.canonical_system(system)
        variant = self.icd10_variants.get(canon)
        icd = canon == ICD10CM or variant is not None
        norm = normalise_code(canon, code, icd=icd)
        candidates: list[tuple[str, str]] = [(canon, norm)]
        if variant is not None:
            parent = norm[:5] if len(norm) > 5 and norm[3:4] == "." else None
            if parent:
                candidates.append((canon, parent))
            shared = not any(norm == x or norm.startswith(x) and len(x) == 3 for x in variant.not_shared)
            if shared:
                candidates.append((variant.shares, parent or norm))
        index = self._index.get(concept, {})
        for sys_, c in candidates:
            hit = index.get((sys_, c))
            if hit is not None:
                return self._as_coded(hit, system, norm, canon)
        patterns = self._patterns.get(concept, ())
        for sys_, c in candidates:
            for entry in patterns:
                if entry.system == sys_ and entry.covers(c):
                    return self._as_coded(entry, system, norm, canon)
        return None

    @staticmethod
    def _as_coded(entry: CodeEntry, system: str, code: str, canon: str) -> CodeEntry:
        if entry.system == system and entry.code == code:
            return entry
        return entry.model_copy(update={"system": canon, "code": code})

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
        """The exact code entries of a section (pattern entries, ``C00-C76``, are in :meth:`patterns_of`)."""
        return [e for e in self.codes.get(concept, []) if e.match == "exact"]

    def patterns_of(self, concept: str) -> list[CodeEntry]:
        return list(self._patterns.get(concept, []))

    def site(self, key: str) -> Site:
        return self.sites[key]

    def site_path(self, key: str | None) -> tuple[str, ...]:
        """The site and its ancestors on the site tree (``ileum`` -> ``("ileum", "small_intestine")``)."""
        out: list[str] = []
        while key is not None and key in self.sites and key not in out:
            out.append(key)
            key = self.sites[key].parent
        return tuple(out)

    def rule_set(self, name: str | None = None) -> RuleSet:
        name = name or self.default_rule_set
        try:
            return self.rule_sets[name]
        except KeyError:
            known = ", ".join(sorted(self.rule_sets))
            raise RuleSetError(f"unknown rule set {name!r} (known: {known})") from None

    def fingerprint(self) -> str:
        """A short hash of all mapping content, for input fingerprints (computed once: the content is frozen)."""
        if not self._fingerprint:
            self._fingerprint.append(self._content_hash())
        return self._fingerprint[0]

    def _content_hash(self) -> str:
        h = hashlib.sha256()
        for concept in sorted(self.codes):
            for e in self.codes[concept]:
                h.update(
                    f"{concept}|{e.system}|{e.code}|{e.match}|{e.site}|{e.fallback_site}|{e.sites}|{e.grade}|"
                    f"{e.at_least}|{e.high_grade}|{e.carcinoma}|{e.requires_link}|{e.net}|{e.value}\n".encode()
                )
        for k in sorted(self.sites):
            s = self.sites[k]
            h.update(f"{k}|{s.drainage}|{s.group}|{s.parent}|{s.nodal_review}\n".encode())
        for k in sorted(self.system_aliases):
            h.update(f"alias|{k}|{self.system_aliases[k]}\n".encode())
        for k in sorted(self.icd10_variants):
            v = self.icd10_variants[k]
            h.update(f"variant|{k}|{v.shares}|{v.not_shared}\n".encode())
        for k in sorted(self.diagnosis_certainty):
            h.update(f"certainty|{k}|{self.diagnosis_certainty[k]}\n".encode())
        h.update(repr(self.text_nets.model_dump()).encode())
        return h.hexdigest()[:16]

    # ------------------------------------------------------------------ checks
    def _check(self) -> None:
        """Cross-file checks: every site named by a code exists; the default rule set exists."""
        for key, site in self.sites.items():
            if site.parent is not None and site.parent not in self.sites:
                raise MappingError(f"parent {site.parent!r} of site {key!r} is not defined", entry=f"sites.{key}")
            if len(self.site_path(key)) < 1 or self._cyclic(key):
                raise MappingError(f"site {key!r} is its own ancestor on the site tree", entry=f"sites.{key}")
        for concept, entries in self.codes.items():
            for e in entries:
                for s in (e.site, e.fallback_site, *e.sites):
                    if s and s not in ("from-body-site", "unspecified") and s not in self.sites:
                        raise MappingError(
                            f"site {s!r} is not defined in any sites section", entry=f"{concept} {e.label}"
                        )
        if self.default_rule_set not in self.rule_sets:
            raise MappingError(f"default_rule_set {self.default_rule_set!r} is not defined")

    def _cyclic(self, key: str) -> bool:
        seen: set[str] = set()
        while key is not None and key in self.sites:
            if key in seen:
                return True
            seen.add(key)
            key = self.sites[key].parent  # type: ignore[assignment]
        return False


def _rebuild(state: dict[str, Any]) -> Mappings:
    return Mappings(**state)


def _uri_table(section: Any, file: str, entry: str, message: str) -> dict[str, str]:
    if not isinstance(section, dict) or not all(isinstance(v, str) for v in section.values()):
        raise MappingError(message, file=file, entry=entry)
    return section


@dataclass
class _Builder:
    """The mutable state of :func:`load_mappings` while it layers files; :meth:`build` makes the read-only
    :class:`Mappings`. Each ``_section`` method reads one kind of section of one file, in the order a later
    section may depend on (``systems`` before the codes naming them, ``icd10_variants`` before ICD codes,
    ``studies`` before ``predictions``)."""

    versions: list[str] = field(default_factory=list)
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
    system_aliases: dict[str, str] = field(default_factory=dict)
    icd10_variants: dict[str, _Variant] = field(default_factory=dict)
    diagnosis_certainty: dict[str, str] = field(default_factory=dict)
    text_nets: TextNets = field(default_factory=TextNets)

    def build(self) -> Mappings:
        m = Mappings(**{f.name: getattr(self, f.name) for f in fields(self)})
        m._check()
        return m

    def layer(self, data: Any, file: str) -> None:
        """Add one file's sections (already parsed YAML) to what earlier files gave."""
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
                getattr(self, key).update(_uri_table(data[key], file, key, f"{key} must map names to URIs"))
        self._systems_sections(data, file)
        if "text_nets" in data:
            self._text_nets(data["text_nets"], file)
        for concept in CODE_SECTIONS:
            if concept in data:
                self._code_section(concept, data[concept], file)
        if "sites" in data:
            self._sites(data["sites"], file)
        if "rule_sets" in data:
            self._rule_sets(data["rule_sets"], file)
        if "default_rule_set" in data:
            self.default_rule_set = str(data["default_rule_set"])
        self._literature(data, file)

    def _systems_sections(self, data: dict[str, Any], file: str) -> None:
        """``system_aliases``, ``icd10_variants`` and ``diagnosis_certainty`` (codes.md v2)."""
        if "system_aliases" in data:
            section = _uri_table(data["system_aliases"], file, "system_aliases",
                                 "must map alias URIs to a name in `systems` or a URI")
            for alias, target in section.items():
                self.system_aliases[str(alias)] = self.systems.get(target, target)
        if "icd10_variants" in data:
            section = data["icd10_variants"]
            if not isinstance(section, dict):
                raise MappingError("must map system names or URIs to variant entries", file=file, entry="icd10_variants")
            for name, raw in section.items():
                v = _validate(_Variant, raw, file, f"icd10_variants.{name}")
                v = v.model_copy(update={
                    "shares": self.systems.get(v.shares, v.shares),
                    "not_shared": tuple(normalise_code(None, x, icd=True) for x in v.not_shared),
                })
                self.icd10_variants[self.systems.get(str(name), str(name))] = v
        if "diagnosis_certainty" in data:
            section = data["diagnosis_certainty"]
            allowed = {"confirmed", "suspected", "refuted", "history"}
            if not isinstance(section, dict) or not all(v in allowed for v in section.values()):
                raise MappingError(f"must map certainty codes to one of {sorted(allowed)}", file=file,
                                   entry="diagnosis_certainty")
            self.diagnosis_certainty.update({str(k): str(v) for k, v in section.items()})

    def _text_nets(self, raw: Any, file: str) -> None:
        nets = _validate(TextNets, raw, file, "text_nets")
        lowered = TextNets(**{
            name: tuple(
                tuple(w.lower() for w in item) if isinstance(item, tuple) else item.lower()
                for item in getattr(nets, name)
            )
            for name in TextNets.model_fields
        })
        self.text_nets = self.text_nets.merged(lowered)

    def _code_section(self, concept: str, entries: Any, file: str) -> None:
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
            if entry.match == "exact":
                icd = entry.system == ICD10CM or entry.system in self.icd10_variants
                entry = entry.model_copy(update={"code": normalise_code(entry.system, entry.code, icd=icd)})
            elif entry.match == "range" and "-" not in entry.code:
                raise MappingError("a range is written LOW-HIGH (C00-C76)", file=file, entry=where)
            self.codes.setdefault(concept, []).append(entry)

    def _sites(self, section: Any, file: str) -> None:
        if not isinstance(section, dict):
            raise MappingError("must map site keys to site entries", file=file, entry="sites")
        for key, raw in section.items():
            self.sites[str(key)] = _validate(Site, raw, file, f"sites.{key}")

    def _rule_sets(self, section: Any, file: str) -> None:
        if not isinstance(section, dict):
            raise MappingError("must map rule-set names to parameters", file=file, entry="rule_sets")
        for name, raw in section.items():
            base = self.rule_sets.get(str(name))
            merged = {**(base.model_dump() if base else {}), **(raw or {}), "name": str(name)}
            self.rule_sets[str(name)] = _validate(RuleSet, merged, file, f"rule_sets.{name}")

    def _literature(self, data: dict[str, Any], file: str) -> None:
        """``studies``, ``predictions`` (each naming a study) and ``mitigation`` (literature.yaml)."""
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


#: libyaml's safe loader when PyYAML was built with it (about 10x faster than the pure-Python one)
def _yaml() -> tuple[Any, Any]:
    """PyYAML and its safe loader, imported when a file is parsed (the default files usually come from the
    JSON cache)."""
    import yaml

    return yaml, getattr(yaml, "CSafeLoader", yaml.SafeLoader)


#: the default mapping files parsed once, as JSON (``mappings/_parsed.json``, shipped beside them): each file's
#: data with the SHA-256 of its text; used only when the hash matches the file as it is, else the YAML is parsed
PARSED_CACHE = "_parsed.json"


@lru_cache(maxsize=4)
def _parsed_cache(folder: str) -> bytes:
    """The bytes of a folder's ``_parsed.json`` (b"" when there is none), read once per process."""
    try:
        return (Path(folder) / PARSED_CACHE).read_bytes()
    except OSError:
        return b""


def _cached(path: Path, text: str) -> Any:
    """The parsed data of a default mapping file from the JSON cache, or None (no cache, or the file changed)."""
    import hashlib

    import orjson

    raw = _parsed_cache(str(path.parent))
    if not raw:
        return None
    try:
        cache = orjson.loads(raw)  # parsed anew each time: the loader may keep or change what it is given
    except orjson.JSONDecodeError:
        return None
    files = cache.get("files") if isinstance(cache, dict) and cache.get("format") == 1 else None
    hit = files.get(path.name) if isinstance(files, dict) else None
    if isinstance(hit, dict) and hit.get("sha256") == hashlib.sha256(text.encode("utf-8")).hexdigest():
        return hit.get("data")
    return None


def write_parsed_cache(folder: Path | None = None) -> Path:
    """Write ``_parsed.json`` for the default mapping files (run after editing them:
    ``python -c "from milan_fhir._mappings import write_parsed_cache; write_parsed_cache()"``); a file whose
    YAML does not survive a JSON round trip unchanged is left out (it is then parsed as YAML)."""
    import hashlib

    import orjson

    folder = folder or _default_dir()
    files = {}
    for name in DEFAULT_FILES:
        text = (folder / name).read_text(encoding="utf-8")
        yaml, loader = _yaml()
        data = yaml.load(text, Loader=loader) or {}
        try:
            if orjson.loads(orjson.dumps(data)) != data:
                continue
        except TypeError:
            continue
        files[name] = {"sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(), "data": data}
    out = folder / PARSED_CACHE
    out.write_bytes(orjson.dumps({"format": 1, "files": files}, option=orjson.OPT_SORT_KEYS) + b"\n")
    _parsed_cache.cache_clear()
    return out


def _read_yaml(path: Path, *, default: bool = False) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    if default:
        data = _cached(path, text)
        if data is not None:
            return data
    yaml, loader = _yaml()
    try:
        return yaml.load(text, Loader=loader) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise MappingError(f"not valid YAML{where}: {getattr(exc, 'problem', exc)}", file=str(path)) from None


def load_mappings(*layers: str | os.PathLike[str], defaults: bool = True) -> Mappings:
    """Load the default mappings, then each layered file (or folder of ``*.yaml``) in order."""
    builder = _Builder()
    paths: list[Path] = []
    if defaults:
        base = _default_dir()
        paths.extend(base / name for name in DEFAULT_FILES)
    n_default = len(paths)
    for layer in layers:
        p = Path(layer)
        if p.is_dir():
            paths.extend(sorted(p.glob("*.yaml")) + sorted(p.glob("*.yml")))
        elif p.exists():
            paths.append(p)
        else:
            raise MappingError("no such mapping file", file=str(p))
    for i, p in enumerate(paths):
        builder.layer(_read_yaml(p, default=i < n_default), str(p))
    return builder.build()


@lru_cache(maxsize=1)
def default_mappings() -> Mappings:
    """The default mappings, loaded once per process."""
    return load_mappings()

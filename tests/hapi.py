"""Helpers for the integration tests that talk to a real HAPI FHIR JPA R4 server.

Plain module, no tests. The pytest fixtures that use it live in ``tests/conftest.py``:

- ``hapi_base_url``: ``$MILAN_FHIR_BASE_URL`` if set, else a local server built from ``tests/hapi-server/``
  (``mvn -B -q package -DskipTests``, cached) and started on a free loopback port.
- ``fhir_run_tag``: a :class:`RunTag` unique to this test session; everything carrying it is purged
  (:func:`purge`) at session end, so a shared server is left clean.

What is here:

- :func:`jar_is_stale`, :func:`build_jar`: build the server jar when its sources changed.
- :class:`LocalHapiServer`: start the jar, wait for ``/fhir/metadata``, stop it by pid.
- :class:`RunTag`, :func:`purge`: tag test data, delete and expunge it again.
- :exc:`HapiUnavailable`: raised when the server cannot be built or started (the fixture turns it into a skip,
  or a failure when ``CI=true``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import requests

__all__ = [
    "SERVER_DIR",
    "JAR_PATH",
    "RUN_TAG_SYSTEM",
    "HapiUnavailable",
    "RunTag",
    "LocalHapiServer",
    "jar_is_stale",
    "build_jar",
    "free_port",
    "wait_until_ready",
    "purge",
    "resource_types",
]

SERVER_DIR = Path(__file__).resolve().parent / "hapi-server"
TARGET_DIR = SERVER_DIR / "target"
JAR_PATH = TARGET_DIR / "hapi-test-server.jar"

RUN_TAG_SYSTEM = "http://milan-fhir.org/fhir/CodeSystem/test-run"

#: first build downloads roughly 0.4 GB into ~/.m2; later builds take seconds
BUILD_TIMEOUT_S = 30 * 60
START_TIMEOUT_S = 180
#: JVM options; MILAN_FHIR_HAPI_JAVA_OPTS replaces them (space separated)
DEFAULT_JAVA_OPTS = ("-Xmx1g", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")

FHIR_JSON = "application/fhir+json"

log = logging.getLogger("milan_fhir.tests.hapi")


class HapiUnavailable(RuntimeError):
    """The local HAPI FHIR server could not be built or started (the message says why)."""


# ---------------------------------------------------------------------------------------------------- build


def _source_files() -> Iterator[Path]:
    yield SERVER_DIR / "pom.xml"
    src = SERVER_DIR / "src"
    if src.is_dir():
        yield from (p for p in src.rglob("*") if p.is_file())


def jar_is_stale(jar: Path = JAR_PATH) -> bool:
    """True when the jar is missing or older than ``pom.xml`` or any file under ``src/``."""
    if not jar.is_file():
        return True
    built = jar.stat().st_mtime
    return any(p.stat().st_mtime > built for p in _source_files())


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """Serialise builds of concurrent pytest sessions in the same checkout (POSIX advisory lock)."""
    TARGET_DIR.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(TARGET_DIR / ".build.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _require_tool(name: str, hint: str) -> str:
    found = shutil.which(name)
    if not found:
        raise HapiUnavailable(f"`{name}` was not found on PATH: {hint}")
    return found


def build_jar(*, force: bool = False, timeout: float = BUILD_TIMEOUT_S) -> Path:
    """Build ``tests/hapi-server`` into :data:`JAR_PATH` unless it is up to date; returns the jar path.

    Runs ``mvn -B -q package -DskipTests`` (reusing ``~/.m2``); output goes to ``target/maven-build.log``.
    """
    _require_tool("java", "the local HAPI FHIR test server needs a Java 17+ JDK (e.g. apt-get install openjdk-17-jdk-headless)")
    with _build_lock():
        if not force and not jar_is_stale():
            return JAR_PATH
        mvn = _require_tool("mvn", "building the local HAPI FHIR test server needs Maven 3.8+ (e.g. apt-get install maven)")
        log_path = TARGET_DIR / "maven-build.log"
        with open(log_path, "wb") as log:
            try:
                done = subprocess.run(
                    [mvn, "-B", "-q", "package", "-DskipTests"],
                    cwd=SERVER_DIR,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise HapiUnavailable(
                    f"building the HAPI test server took longer than {timeout:.0f} s; log {log_path}:\n{_tail(log_path)}"
                ) from None
        if done.returncode != 0 or not JAR_PATH.is_file():
            raise HapiUnavailable(
                f"`mvn -B -q package -DskipTests` in {SERVER_DIR} failed (exit {done.returncode}); "
                f"log {log_path}:\n{_tail(log_path)}"
            )
        # mvn may keep the old jar's mtime when nothing changed: mark it as built now
        os.utime(JAR_PATH)
        return JAR_PATH


# ---------------------------------------------------------------------------------------------------- run


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until_ready(
    base_url: str,
    *,
    timeout: float = START_TIMEOUT_S,
    process: subprocess.Popen | None = None,
    log_path: Path | None = None,
) -> float:
    """Poll ``{base_url}/metadata`` until it answers 200; returns the seconds waited.

    Fails fast (:exc:`HapiUnavailable` with the log tail) when ``process`` exits meanwhile.
    """
    start = time.monotonic()
    deadline = start + timeout
    last_error = "no answer yet"
    while True:
        if process is not None and process.poll() is not None:
            tail = _tail(log_path) if log_path else ""
            raise HapiUnavailable(f"the HAPI test server exited with code {process.returncode} while starting; log {log_path}:\n{tail}")
        try:
            r = requests.get(f"{base_url}/metadata", headers={"Accept": FHIR_JSON}, timeout=10)
            if r.status_code == 200:
                return time.monotonic() - start
            last_error = f"HTTP {r.status_code}"
        except requests.RequestException as exc:
            last_error = type(exc).__name__
        if time.monotonic() >= deadline:
            tail = _tail(log_path) if log_path else ""
            raise HapiUnavailable(f"{base_url}/metadata not ready after {timeout:.0f} s ({last_error}); log {log_path}:\n{tail}")
        time.sleep(1.0)


def _prune_logs(keep: int) -> None:
    """Removes all but the ``keep`` newest ``hapi-server-PORT.log`` files of earlier runs."""
    logs = sorted(TARGET_DIR.glob("hapi-server-*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in logs[keep:]:
        with contextlib.suppress(OSError):
            old.unlink()


class LocalHapiServer:
    """The built jar running on a free loopback port; use as a context manager or call start()/stop().

    ``base_url`` is ``http://127.0.0.1:PORT/fhir``; the server log is ``target/hapi-server-PORT.log``.
    """

    def __init__(self, jar: Path = JAR_PATH, *, port: int | None = None, java_opts: Iterable[str] | None = None):
        self.jar = jar
        self.port = port or free_port()
        env_opts = os.environ.get("MILAN_FHIR_HAPI_JAVA_OPTS")
        if java_opts is not None:
            self.java_opts = list(java_opts)
        elif env_opts:
            self.java_opts = env_opts.split()
        else:
            self.java_opts = list(DEFAULT_JAVA_OPTS)
        self.base_url = f"http://127.0.0.1:{self.port}/fhir"
        self.log_path = TARGET_DIR / f"hapi-server-{self.port}.log"
        self.process: subprocess.Popen | None = None
        self.startup_seconds: float | None = None

    def start(self, timeout: float = START_TIMEOUT_S) -> str:
        java = _require_tool("java", "the local HAPI FHIR test server needs a Java 17+ JDK")
        if not self.jar.is_file():
            raise HapiUnavailable(f"{self.jar} does not exist: build it first (tests/hapi.py build_jar())")
        cmd = [java, *self.java_opts, "-jar", str(self.jar), f"--server.port={self.port}", "--server.address=127.0.0.1"]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        _prune_logs(keep=5)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                cmd, cwd=TARGET_DIR, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        try:
            self.startup_seconds = wait_until_ready(
                self.base_url, timeout=timeout, process=self.process, log_path=self.log_path
            )
        except BaseException:
            self.stop()
            raise
        return self.base_url

    def stop(self, grace: float = 20.0) -> None:
        """Terminate the server by pid (SIGTERM), then kill it if it has not exited after ``grace`` seconds."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def __enter__(self) -> "LocalHapiServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------------- test data


@dataclass(frozen=True)
class RunTag:
    """A ``meta.tag`` coding that marks the data of one test session."""

    system: str
    code: str

    @classmethod
    def new(cls, system: str = RUN_TAG_SYSTEM) -> "RunTag":
        return cls(system, uuid.uuid4().hex)

    @property
    def token(self) -> str:
        """``system|code``, the value for a ``_tag`` search parameter."""
        return f"{self.system}|{self.code}"

    @property
    def coding(self) -> dict:
        """The coding for ``meta.tag``."""
        return {"system": self.system, "code": self.code}

    def meta(self) -> dict:
        """A fresh ``meta`` element carrying only this tag."""
        return {"tag": [self.coding]}

    def apply(self, resource: dict) -> dict:
        """Adds the tag to ``resource['meta']['tag']`` (in place) and returns the resource."""
        tags = resource.setdefault("meta", {}).setdefault("tag", [])
        if self.coding not in tags:
            tags.append(dict(self.coding))
        return resource


def _tag_token(tag: RunTag | str | tuple[str, str]) -> str:
    if isinstance(tag, RunTag):
        return tag.token
    if isinstance(tag, tuple):
        return f"{tag[0]}|{tag[1]}"
    if "|" not in tag:
        raise ValueError(f"a tag needs a system: 'system|code', got {tag!r}")
    return tag


def resource_types(base_url: str, session: requests.Session | None = None, timeout: float = 60) -> list[str]:
    """Resource types the server's CapabilityStatement lists with the ``delete`` interaction."""
    s = session or requests.Session()
    r = s.get(f"{base_url}/metadata", headers={"Accept": FHIR_JSON}, timeout=timeout)
    r.raise_for_status()
    out: list[str] = []
    for rest in r.json().get("rest", []):
        for res in rest.get("resource", []):
            codes = {i.get("code") for i in res.get("interaction", [])}
            if "delete" in codes:
                out.append(res["type"])
    return out


#: referrers first: deleting these before the resources they point at avoids most 409s on the first pass
_DELETE_FIRST = (
    "Provenance", "AuditEvent", "RiskAssessment", "DetectedIssue", "Communication", "Task",
    "DocumentReference", "DiagnosticReport", "Observation", "ImagingStudy", "Media", "Specimen",
    "MedicationAdministration", "MedicationStatement", "MedicationRequest", "MedicationDispense",
    "Procedure", "Condition", "AllergyIntolerance", "CarePlan", "ServiceRequest", "Encounter",
    "EpisodeOfCare", "Composition", "List", "Group", "Bundle", "Binary", "Patient",
)


def _order(types: Iterable[str]) -> list[str]:
    rank = {t: i for i, t in enumerate(_DELETE_FIRST)}
    return sorted(dict.fromkeys(types), key=lambda t: (rank.get(t, -1), t))


def _call(s: requests.Session, method: str, url: str, **kw) -> requests.Response:
    """One request, timed: DEBUG log for each, WARNING when slow (purge runs in teardown, where hangs hide)."""
    t0 = time.monotonic()
    r = s.request(method, url, **kw)
    took = time.monotonic() - t0
    level = logging.WARNING if took > 10 else logging.DEBUG
    log.log(level, "purge: %s %s %s -> %s in %.1f s", method, url, kw.get("params") or "", r.status_code, took)
    return r


def _search_ids(s: requests.Session, base_url: str, rtype: str, token: str, timeout: float) -> list[str]:
    ids: list[str] = []
    url: str | None = f"{base_url}/{rtype}"
    params: dict | None = {"_tag": token, "_elements": "id", "_count": "500"}
    pages = 0
    while url and pages < 100:
        r = _call(s, "GET", url, params=params, headers={"Accept": FHIR_JSON, "Cache-Control": "no-cache"}, timeout=timeout)
        if r.status_code != 200:
            return ids
        bundle = r.json()
        ids += [e["resource"]["id"] for e in bundle.get("entry", []) if e.get("resource", {}).get("resourceType") == rtype]
        url = next((l["url"] for l in bundle.get("link", []) if l.get("relation") == "next"), None)
        params = None
        pages += 1
    return ids


#: ids per batch Bundle of DELETEs (a batch runs each entry in its own transaction: linear time, where HAPI's
#: conditional delete of N resources in one transaction takes O(N^2): 600 Observations 44 s against 2 s)
_DELETE_CHUNK = 100

_EXPUNGE_PARAMS = {
    "resourceType": "Parameters",
    "parameter": [
        {"name": "expungeDeletedResources", "valueBoolean": True},
        {"name": "expungePreviousVersions", "valueBoolean": True},
    ],
}


def purge(
    base_url: str,
    tag: RunTag | str | tuple[str, str],
    *,
    types: Iterable[str] | None = None,
    expunge: bool = True,
    session: requests.Session | None = None,
    timeout: float = 300,
    max_passes: int = 6,
    expunge_retry_s: float = 45,
) -> dict:
    """Deletes every resource carrying ``tag`` and (``expunge=True``) expunges it, leaving no history behind.

    ``types`` limits the resource types looked at (default: every type the CapabilityStatement can delete).
    1. Find the tagged ids per type (``GET Type?_tag=system|code&_elements=id``).
    2. Delete them by id in ``batch`` Bundles of DELETEs, over several passes, so that a resource still referenced
       by another tagged resource (409) goes once its referrer is gone. Then one conditional
       ``DELETE Type?_tag=system|code`` per type as a safety net for anything tagged meanwhile.
    3. ``Type/id/$expunge`` for every deleted id. HAPI refuses (412, HAPI-2415) to expunge a CodeSystem until the
       asynchronous deletion of its concepts has finished (about 10 s): those are retried for up to
       ``expunge_retry_s``. Expunge is best effort: a server with expunge disabled keeps the deleted versions in
       its history (``expunge_error`` says so).

    ``timeout`` is per request. Returns ``{"deleted": {type: [ids]}, "expunged": n, "remaining": {type: [ids]},
    "expunge_error": str | None}``; ``remaining`` is empty when everything went.
    """
    s = session or requests.Session()
    base_url = base_url.rstrip("/")
    token = _tag_token(tag)
    candidates = _order(types if types is not None else resource_types(base_url, s, timeout))

    found = {t: ids for t in candidates if (ids := _search_ids(s, base_url, t, token, timeout))}
    log.info("purge %s: found %s", token, {t: len(v) for t, v in found.items()})
    pending = dict(found)
    deleted: dict[str, list[str]] = {}
    for _ in range(max_passes):
        if not pending:
            break
        progress = False
        for rtype in list(pending):
            left: list[str] = []
            for i in range(0, len(pending[rtype]), _DELETE_CHUNK):
                chunk = pending[rtype][i : i + _DELETE_CHUNK]
                bundle = {
                    "resourceType": "Bundle",
                    "type": "batch",
                    "entry": [{"request": {"method": "DELETE", "url": f"{rtype}/{rid}"}} for rid in chunk],
                }
                r = _call(s, "POST", base_url, json=bundle, headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}, timeout=timeout)
                entries = r.json().get("entry", []) if r.ok else []
                if len(entries) != len(chunk):
                    left += chunk
                    continue
                for rid, entry in zip(chunk, entries):
                    status = entry.get("response", {}).get("status", "500").split()[0]
                    if status.startswith("2") or status in ("404", "410"):
                        deleted.setdefault(rtype, []).append(rid)
                        progress = True
                    else:  # 409: still referenced by a tagged resource of a type deleted later: next pass
                        left.append(rid)
            if left:
                pending[rtype] = left
            else:
                pending.pop(rtype)
        if not progress:
            break
    # safety net: whatever got the tag after the search above
    for rtype in found:
        if rtype not in pending:
            _call(s, "DELETE", f"{base_url}/{rtype}", params={"_tag": token}, headers={"Accept": FHIR_JSON}, timeout=timeout)

    expunged = 0
    errors: list[str] = []
    if expunge:
        todo = [(t, rid) for t, ids in deleted.items() for rid in ids]
        deadline = time.monotonic() + expunge_retry_s
        refused_in_a_row = 0
        while todo:
            retry = []
            for rtype, rid in todo:
                r = _call(
                    s, "POST", f"{base_url}/{rtype}/{rid}/$expunge", json=_EXPUNGE_PARAMS,
                    headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}, timeout=timeout,
                )
                if r.ok:
                    expunged += 1
                    refused_in_a_row = 0
                elif r.status_code == 412:  # asynchronous deletion still running (HAPI-2415): later
                    retry.append((rtype, rid))
                else:
                    errors.append(f"{rtype}/{rid}/$expunge: HTTP {r.status_code} {r.text[:300]}")
                    refused_in_a_row += 1
                    if refused_in_a_row >= 3:  # expunge disabled or refused here: stop asking
                        retry = []
                        break
            todo = retry
            if todo and time.monotonic() >= deadline:
                errors += [f"{t}/{rid}/$expunge: still refused (412) after {expunge_retry_s:.0f} s" for t, rid in todo]
                break
            if todo:
                time.sleep(2)

    remaining = {t: ids for t in found if (ids := _search_ids(s, base_url, t, token, timeout))}
    log.info("purge %s: deleted %s, expunged %d, remaining %s", token, {t: len(v) for t, v in deleted.items()}, expunged, remaining)
    expunge_error = "; ".join(errors[:3]) or None
    return {"deleted": deleted, "expunged": expunged, "remaining": remaining, "expunge_error": expunge_error}

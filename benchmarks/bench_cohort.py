"""Benchmark of ``milan-fhir cohort`` against the parse-only baseline, in one run.

    python benchmarks/bench_cohort.py [--dir EXPORT] [--scale 1] [--repeat 3] [--workers 1,2]

Times, each variant in a fresh subprocess (clean memory peaks), interleaved, median of ``--repeat`` runs:
  (a) reading and ``orjson``-parsing every line of the export files (the baseline, 1 process);
  (b) the full cohort evaluation (``run_cohort``: prefilter, adapt, evaluate, write all outputs) with 1 and
      with 2 worker processes.
Prints lines/s of each, (b)/(a) throughput in 1 process, the 1 -> 2 process scaling, and peak memory: the peak
RSS of the main process and of the largest worker (``getrusage``), and their sum bound main + N x worker; and the
minor page faults of all its processes (each costs kernel time; see ``_sources.keep_read_blocks``).

Without ``--dir`` the export is generated (benchmarks/generate_export.py, seed 1, 2,000 patients x ``--scale``)
into ``$TMPDIR/milan-fhir-bench/scale-K`` and reused by later runs. Targets (issue 13, ``--scale 10``):
(b)/(a) >= 1.0 in one process (goal 1.5), scaling 1 -> 2 processes >= 1.8x, peak RSS < 150 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
AS_OF = "2026-01-15"


def _maxrss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux: kilobytes


def _cpu() -> float:
    """CPU seconds (user + system) of this process and of its finished children."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def child_parse(export: str) -> dict:
    import orjson

    files = sorted(p for p in Path(export).iterdir() if p.is_file() and not p.name.startswith("."))
    t = time.perf_counter()
    cpu = _cpu()
    n = 0
    loads = orjson.loads
    for p in files:
        if p.name.endswith(".gz"):
            import gzip

            fh = gzip.open(p, "rb")
        else:
            fh = open(p, "rb")
        with fh:
            for line in fh:
                loads(line)
                n += 1
    secs = time.perf_counter() - t
    return {"seconds": secs, "cpu": _cpu() - cpu, "lines": n, "main_mb": _maxrss_mb(resource.RUSAGE_SELF),
            "worker_mb": 0.0}


def child_cohort(export: str, workers: int, out: str, profile: str | None) -> dict:
    sys.path.insert(0, str(ROOT))
    from milan_fhir._cohort import run_cohort

    prof = None
    if profile:
        from pyinstrument import Profiler

        prof = Profiler()
        prof.start()
    t = time.perf_counter()
    cpu = _cpu()
    summary = run_cohort(export, out, as_of=AS_OF, workers=workers)
    secs = time.perf_counter() - t
    if prof is not None:
        prof.stop()
        Path(profile).write_text(prof.output_text(unicode=False, color=False, show_all=False))
    return {
        "seconds": secs,
        "cpu": _cpu() - cpu,
        "lines": summary["lines"],
        "main_mb": _maxrss_mb(resource.RUSAGE_SELF),
        "worker_mb": _maxrss_mb(resource.RUSAGE_CHILDREN),
        "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt + resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt,
        "cohort": summary["tally"]["patients"],
        "verdicts": summary["tally"]["verdicts"],
    }


def _idle_fraction(seconds: float = 1.0) -> float | None:
    """Share of CPU time idle over ``seconds`` (Linux /proc/stat), None elsewhere."""
    def sample() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as fh:
                fields = [int(x) for x in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        return fields[3] + fields[4], sum(fields)

    a = sample()
    time.sleep(seconds)
    b = sample()
    if a is None or b is None or b[1] == a[1]:
        return None
    return (b[0] - a[0]) / (b[1] - a[1])


def wait_for_quiet(threshold: float, limit: float) -> float | None:
    """Wait (at most ``limit`` s) until the machine's CPUs are at least ``threshold`` idle; return the idle share."""
    deadline = time.monotonic() + limit
    idle = _idle_fraction()
    while idle is not None and idle < threshold and time.monotonic() < deadline:
        idle = _idle_fraction()
    return idle


def run_variant(kind: str, export: str, workers: int, out: str, profile: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--dir", export, "--child-workers", str(workers),
           "--child-out", out]
    if profile:
        cmd += ["--child-profile", profile]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"benchmark variant {kind} (workers={workers}) failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ensure_export(scale: int) -> str:
    target = Path(os.environ.get("TMPDIR", tempfile.gettempdir())) / "milan-fhir-bench" / f"scale-{scale}"
    marker = target / ".complete"
    if not marker.exists():
        print(f"generating the synthetic export (2,000 x {scale} patients) into {target} ...", file=sys.stderr)
        sys.path.insert(0, str(HERE))
        import generate_export

        if target.exists():
            import shutil

            shutil.rmtree(target)
        generate_export.generate(target, patients=2000 * scale, seed=1)
        marker.write_text("ok\n")
    return str(target)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", help="an existing export folder (default: generate one)")
    ap.add_argument("--scale", type=int, default=1, help="patients x 2,000 when generating (memory check: 10)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts for (b)")
    ap.add_argument("--profile", help="write a pyinstrument profile of the 1-process cohort run to this file")
    ap.add_argument("--quiet", type=float, default=0.0, metavar="SHARE",
                    help="on a shared machine: before each variant wait (at most 120 s) until this share of the "
                         "CPUs is idle, e.g. 0.9")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-workers", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    ap.add_argument("--child-profile", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.child == "parse":
        print(json.dumps(child_parse(a.dir)))
        return 0
    if a.child == "cohort":
        print(json.dumps(child_cohort(a.dir, a.child_workers, a.child_out, a.child_profile)))
        return 0

    export = a.dir or ensure_export(a.scale)
    size = sum(p.stat().st_size for p in Path(export).iterdir() if p.is_file())
    workers = [int(w) for w in a.workers.split(",")]
    runs: dict[str, list[dict]] = {"parse": []} | {f"cohort-{w}": [] for w in workers}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="milan-bench-") as tmp:
        idle_seen: list[float] = []

        def quiet() -> None:
            if a.quiet:
                idle = wait_for_quiet(a.quiet, 120.0)
                if idle is not None:
                    idle_seen.append(idle)

        for i in range(a.repeat):
            quiet()
            runs["parse"].append(run_variant("parse", export, 1, tmp))
            for w in workers:
                prof = a.profile if (a.profile and w == 1 and i == 0) else None
                quiet()
                runs[f"cohort-{w}"].append(run_variant("cohort", export, w, str(Path(tmp) / f"out-{w}"), prof))
            print(f"  round {i + 1}/{a.repeat}: " + ", ".join(
                f"{k} {v[-1]['seconds']:.2f} s" for k, v in runs.items()), file=sys.stderr)

    def med(key: str, field: str = "seconds") -> float:
        return statistics.median(r[field] for r in runs[key])

    if a.quiet and idle_seen:
        print(f"CPU idle before the variants: {min(idle_seen):.0%} to {max(idle_seen):.0%}")
    lines = runs["parse"][0]["lines"]
    base = lines / med("parse")
    sys.path.insert(0, str(ROOT))
    from milan_fhir._adapters._prefilter import ENGINE

    print(f"export: {export} ({size / 1e6:,.0f} MB, {lines:,} lines); median of {a.repeat} runs; "
          f"{os.cpu_count()} CPUs; prefilter engine {ENGINE}")
    print(f"(a) read + orjson.loads every line, 1 process : {base:>10,.0f} lines/s  ({med('parse'):.2f} s, "
          f"{med('parse', 'cpu'):.2f} CPU s)")
    first = None
    for w in workers:
        key = f"cohort-{w}"
        tput = runs[key][0]["lines"] / med(key)
        first = first or tput
        peak_main = max(r["main_mb"] for r in runs[key])
        peak_worker = max(r["worker_mb"] for r in runs[key])
        bound = peak_main + (w - 1) * peak_worker  # the main process works too, beside w - 1 helpers
        print(f"(b) cohort, {w} process{'es' if w > 1 else '  '}                     : {tput:>10,.0f} lines/s  "
              f"({med(key):.2f} s, {med(key, 'cpu'):.2f} CPU s)  (b)/(a) = {tput / base:.2f}")
        print(f"    peak RSS: main {peak_main:,.0f} MB, largest worker {peak_worker:,.0f} MB, "
              f"sum bound {bound:,.0f} MB; minor page faults {med(key, 'faults'):,.0f}; "
              f"cohort {runs[key][0]['cohort']} patients {runs[key][0]['verdicts']}")
    if len(workers) > 1:
        one, two = f"cohort-{workers[0]}", f"cohort-{workers[1]}"
        print(f"scaling {workers[0]} -> {workers[1]} processes: {med(one) / med(two):.2f}x "
              f"(CPU seconds {med(one, 'cpu'):.2f} -> {med(two, 'cpu'):.2f}; load average before the run "
              f"{load_before:.1f}, after {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark of the Spark engine (``milan_fhir.spark``) against the local engine, in one run.

    python benchmarks/bench_spark.py [--dir EXPORT] [--scale 1] [--repeat 3] [--quiet 0.9]

Each variant runs in a fresh subprocess, variants interleaved, median of ``--repeat`` runs:
  (L) the local engine, ``run_cohort(workers=1)``: one process, the per-core reference;
  (L2) the local engine with 2 processes: how far the same work scales on this machine's cores at all;
  (S1) the Spark engine on ``local[1]`` (one executor core);
  (S2) the Spark engine on ``local[2]``.
A Spark variant starts its session and screens a small warm-up export first (JVM start, Python workers, JIT:
paid once per session, reported apart as ``startup``); the figure is the screen of the export after that,
outputs written (the same files as the local engine, which the benchmark checks byte for byte).

Prints lines/s of each, lines/s per core (L: 1 core; S1: 1; S2: 2), the per-core ratio Spark/local (target:
at least 0.5, issue 12) and the local[1] -> local[2] scaling (target: at least 1.7x on an idle machine).

Without ``--dir`` the export is generated (benchmarks/generate_export.py, seed 1, 2,000 patients x ``--scale``)
into ``$TMPDIR/milan-fhir-bench/spark-scale-K`` and reused by later runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cohort import wait_for_quiet  # noqa: E402 - the same CPU-idle wait as the local benchmark

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
AS_OF = "2026-01-15"
OUTPUTS = ("results.ndjson", "risk-assessments.ndjson", "errors.ndjson")


def _busy() -> tuple[int, int] | None:
    """(busy, total) CPU ticks of the whole machine so far (Linux /proc/stat), None elsewhere."""
    try:
        with open("/proc/stat") as fh:
            f = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(f) - f[3] - f[4], sum(f)


def _cores_busy(a: tuple[int, int] | None, seconds: float) -> float | None:
    b = _busy()
    if a is None or b is None or seconds <= 0:
        return None
    return (b[0] - a[0]) / (os.sysconf("SC_CLK_TCK") * seconds)


def child_local(export: str, out: str, workers: int = 1) -> dict:
    sys.path.insert(0, str(ROOT))
    from milan_fhir._cohort import run_cohort

    busy = _busy()
    t = time.perf_counter()
    result = run_cohort(export, out, as_of=AS_OF, workers=workers)
    secs = time.perf_counter() - t
    return {"seconds": secs, "lines": result.lines, "cohort": result.patients, "cores": _cores_busy(busy, secs)}


def child_spark(export: str, out: str, cores: int, warmup: str) -> dict:
    sys.path.insert(0, str(ROOT))
    from milan_fhir import spark as ms

    t0 = time.perf_counter()
    spark = ms.session(f"local[{cores}]", app_name="milan-fhir-bench",
                       config={"spark.ui.showConsoleProgress": "false", "spark.driver.memory": "1g",
                               "spark.sql.shuffle.partitions": str(2 * cores)})
    spark.sparkContext.setLogLevel("ERROR")
    ms.run_cohort(spark, warmup, out + "-warmup", as_of=AS_OF)
    startup = time.perf_counter() - t0
    busy = _busy()
    t = time.perf_counter()
    result = ms.run_cohort(spark, export, out, as_of=AS_OF)
    secs = time.perf_counter() - t
    cores = _cores_busy(busy, secs)
    spark.stop()
    return {"seconds": secs, "startup": startup, "lines": result.lines, "cohort": result.patients,
            "stages": result["run"]["stages"], "cores": cores}


def _variant(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"benchmark variant {args[0]} failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _generate(target: Path, patients: int) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate_export", HERE / "generate_export.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules.setdefault("generate_export", mod)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    mod.generate(target, patients=patients, seed=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", help="an existing export folder (default: generated)")
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quiet", type=float, default=0.0,
                    help="start each variant only when the CPUs are at least this idle (0-1; waits at most 120 s)")
    ap.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        kind, *rest = a.child
        res = (child_local(rest[0], rest[1], int(rest[2])) if kind == "local"
               else child_spark(rest[0], rest[1], int(rest[2]), rest[3]))
        print(json.dumps(res))
        return

    base = Path(os.environ.get("TMPDIR", tempfile.gettempdir())) / "milan-fhir-bench"
    export = Path(a.dir) if a.dir else base / f"spark-scale-{a.scale}"
    if not export.exists():
        print(f"generating the export into {export} ...", file=sys.stderr)
        _generate(export, 2000 * a.scale)
    warmup = base / "spark-warmup"
    if not warmup.exists():
        import importlib.util

        spec = importlib.util.spec_from_file_location("generate_export", HERE / "generate_export.py")
        mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
        mod.generate(warmup, patients=40, resources=20, net_fraction=0.5, seed=2)
    outs = base / "spark-out"
    runs: dict[str, list[dict]] = {"L": [], "L2": [], "S1": [], "S2": []}
    for i in range(a.repeat):
        for key, args in (("L", ["local", str(export), str(outs / "L"), "1"]),
                          ("L2", ["local", str(export), str(outs / "L2"), "2"]),
                          ("S1", ["spark", str(export), str(outs / "S1"), "1", str(warmup)]),
                          ("S2", ["spark", str(export), str(outs / "S2"), "2", str(warmup)])):
            idle = wait_for_quiet(a.quiet, 120) if a.quiet else None
            r = _variant(args)
            r["idle"] = idle
            runs[key].append(r)
            print(f"run {i + 1} {key}: {r['seconds']:.2f} s" + (f" (startup {r['startup']:.1f} s)" if "startup" in r
                                                                else "") + (f", idle {idle:.0%} before" if idle else "")
                  + (f", machine CPUs busy {r['cores']:.2f} on average during it" if r.get("cores") is not None else "")
                  + (f", stages {r['stages']}" if "stages" in r else ""), file=sys.stderr)
    for name in OUTPUTS:
        same = len({(outs / k / name).read_bytes() for k in runs}) == 1
        if not same:
            raise SystemExit(f"the engines disagree on {name}")
    lines = runs["L"][0]["lines"]
    med = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    rate = {k: lines / s for k, s in med.items()}
    per_core = {"L": rate["L"], "S1": rate["S1"], "S2": rate["S2"] / 2}
    print(f"export: {export} ({lines:,} lines, cohort {runs['L'][0]['cohort']}); median of {a.repeat}; "
          f"outputs identical across engines")
    print(f"  (L)  local engine, 1 process : {rate['L']:>10,.0f} lines/s ({med['L']:.2f} s)")
    print(f"  (L2) local engine, 2 processes: {rate['L2']:>10,.0f} lines/s ({med['L2']:.2f} s)")
    print(f"  (S1) Spark local[1]          : {rate['S1']:>10,.0f} lines/s ({med['S1']:.2f} s; session start-up and "
          f"warm-up {statistics.median(r['startup'] for r in runs['S1']):.1f} s apart)")
    print(f"  (S2) Spark local[2]          : {rate['S2']:>10,.0f} lines/s ({med['S2']:.2f} s)")
    print(f"  per core: local {per_core['L']:,.0f}, Spark local[1] {per_core['S1']:,.0f}, Spark local[2] "
          f"{per_core['S2']:,.0f} lines/s per core")
    print(f"  Spark/local per core: {per_core['S1'] / per_core['L']:.2f} (local[1]), "
          f"{per_core['S2'] / per_core['L']:.2f} (local[2])   [target >= 0.5]")
    print(f"  scaling local[1] -> local[2]: {med['S1'] / med['S2']:.2f}x   [target >= 1.7x on an idle machine]; "
          f"the local engine, 1 -> 2 processes, same run: {med['L'] / med['L2']:.2f}x (what this machine gives the "
          f"same work on two cores)")
    for k in runs:
        cores = [r["cores"] for r in runs[k] if r.get("cores") is not None]
        if cores:
            print(f"  {k}: machine CPUs busy during the screen (all processes, other load included): median "
                  f"{statistics.median(cores):.2f} of {os.cpu_count()}")


if __name__ == "__main__":
    main()

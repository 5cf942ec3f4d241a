"""Start-up benchmark: ``milan-fhir evaluate`` of one small Bundle from a cold process, against ``python -c pass``.

    python benchmarks/bench_startup.py [--repeat 15] [--bundle fixtures/01-ileal-net-eligible.json] [--imports]

Each run is a new interpreter (the same one as this script's), the two commands interleaved, median of
``--repeat``; printed: the median wall seconds of each, their difference (what milan-fhir adds), the ratio, and
whether the evaluate run is within the 0.35 s of issue 13. ``--imports`` adds the slowest imports of one
evaluate run (``python -X importtime``), cumulative, to see where the time goes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 0.35


#: the children write and use .pyc files, as an installed package does (pip compiles them at install), even where
#: the environment says PYTHONDONTWRITEBYTECODE (then every run would compile every module from source)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _time(cmd: list[str]) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    secs = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    return secs


def _imports(cmd: list[str], top: int) -> list[tuple[float, str]]:
    proc = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env=ENV)
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self, cum, name = line.split("|", 2)
        rows.append((int(cum) / 1e6, name.rstrip()))
    rows.sort(reverse=True)
    return rows[:top]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--bundle", default="fixtures/01-ileal-net-eligible.json")
    ap.add_argument("--imports", action="store_true", help="also list the slowest imports of one evaluate run")
    a = ap.parse_args(argv)

    py = sys.executable
    base_cmd = [py, "-c", "pass"]
    eval_cmd = [py, "-m", "milan_fhir", "evaluate", a.bundle, "--as-of", "2026-01-15"]
    _time(eval_cmd)  # once first: .pyc files written, the OS file cache warm (a "cold process", not a cold disk)
    base, ev = [], []
    for _ in range(a.repeat):
        base.append(_time(base_cmd))
        ev.append(_time(eval_cmd))
    b, e = statistics.median(base), statistics.median(ev)
    print(f"python -c pass                      : {b:.3f} s (median of {a.repeat})")
    print(f"milan-fhir evaluate {Path(a.bundle).name}: {e:.3f} s (median of {a.repeat}; min {min(ev):.3f}, "
          f"max {max(ev):.3f})")
    print(f"milan-fhir adds {e - b:.3f} s; ratio {e / b:.1f}x python -c pass; target <= {TARGET_SECONDS} s: "
          f"{'met' if e <= TARGET_SECONDS else 'NOT met'}")
    if "PYTHONDONTWRITEBYTECODE" in os.environ:
        print("(PYTHONDONTWRITEBYTECODE is set here: the runs above ignored it, as an installed package's .pyc files "
              "would; with it, each run compiles every module from source, ~0.15 s more)")
    if a.imports:
        print("slowest imports of one evaluate run (cumulative seconds):")
        for secs, name in _imports(eval_cmd, 15):
            print(f"  {secs:6.3f}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

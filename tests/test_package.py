"""The built wheel works on its own: installed into a fresh venv, run from another folder.

Builds the wheel with pip (hatchling is the build backend, fetched like any build requirement), installs it
with ``--no-deps`` into a venv that sees the already-installed dependencies, and runs the ``milan-fhir``
console script from a folder that is not the checkout, so only the installed package can be found.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_wheel_installs_and_runs_from_elsewhere(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    assert (ROOT / "README.md").is_file(), "README.md is missing: pyproject.toml names it as the readme; no wheel builds"
    wheel_dir = tmp_path / "wheel"
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(wheel_dir), str(ROOT)], ROOT, env)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    wheels = list(wheel_dir.glob("milan_fhir-*.whl"))
    assert len(wheels) == 1

    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], tmp_path, env)
    assert made.returncode == 0, made.stderr
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    py = bindir / "python"
    inst = _run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", str(wheels[0])], tmp_path, env)
    assert inst.returncode == 0, inst.stdout[-3000:] + inst.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = _run(
        [
            str(py), "-c",
            "import json, milan_fhir; print(json.dumps({'file': milan_fhir.__file__, 'version': milan_fhir.__version__,"
            " 'sds': [s['url'] for s in milan_fhir.structure_definitions()],"
            " 'mapping_files': milan_fhir.default_mappings().files}))",
        ],
        elsewhere, env,
    )
    assert probe.returncode == 0, probe.stderr
    info = json.loads(probe.stdout)
    assert Path(info["file"]).resolve().is_relative_to(venv.resolve()), info["file"]  # not the checkout
    assert info["version"] != "0.0.0+local"
    assert len(info["sds"]) == 4  # criterion-result, caution, input-fingerprint, milan-risk-assessment
    assert info["mapping_files"] and all("_default_mappings" in f for f in info["mapping_files"])
    assert all(Path(f).resolve().is_relative_to(venv.resolve()) for f in info["mapping_files"])

    run = _run(
        [str(bindir / "milan-fhir"), "evaluate", str(ROOT / "fixtures"), "--format", "json", "--as-of", "2026-06-30"],
        elsewhere, env,
    )
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    results = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(results) > 10
    assert all(r["mapping_version"].startswith("milan-fhir-default@") for r in results)
    assert {r["verdict"] for r in results} >= {"eligible", "ineligible"}

"""The layers of DEVELOPERS.md hold: every import-linter contract of ``.importlinter`` is kept (function-level and
``TYPE_CHECKING`` imports count), and the checker is shown to fail on a copy of the package with one forbidden
import (or a cycle, or an unplaced module) planted in it."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".importlinter"

#: the contracts DEVELOPERS.md describes; dropping one from .importlinter fails test_the_contracts_are_all_there
CONTRACTS = {
    "domain": "forbidden",
    "criteria": "forbidden",
    "mappings": "forbidden",
    "adapters": "forbidden",
    "writers": "forbidden",
    "facade": "forbidden",
    "layers": "layers",
    "cli-top": "forbidden",
    "acyclic": "acyclic_siblings",
}


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` (the import-linter of the test extra) on the package found first on the path from cwd."""
    exe = Path(sys.executable).parent / "lint-imports"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                                                                  "lint_imports_command()"]
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([*cmd, "--config", str(CONFIG), "--no-cache"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _contract_names() -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read(CONFIG)
    return {s.split(":", 2)[2]: parser[s]["name"] for s in parser.sections() if s.startswith("importlinter:contract:")}


def _broken(output: str) -> set[str]:
    """The ids of the contracts the output reports BROKEN."""
    names = _contract_names()
    flat = " ".join(output.split())
    return {cid for cid, name in names.items() if f"{' '.join(name.split())} BROKEN" in flat}


def test_the_contracts_are_all_there():
    parser = configparser.ConfigParser()
    parser.read(CONFIG)
    found = {s.split(":", 2)[2]: parser[s]["type"] for s in parser.sections() if s.startswith("importlinter:contract:")}
    assert found == CONTRACTS
    assert parser["importlinter"]["root_package"] == "milan_fhir"
    layers = parser["importlinter:contract:layers"]
    assert layers.getboolean("exhaustive"), "every top-level module must be placed in a layer"
    top = [line.strip() for line in layers["layers"].strip().splitlines()]
    assert top[:2] == ["__main__", "_cli | _docs_codes"], "the command line is the top layer"


def test_every_contract_is_kept():
    run = _lint(ROOT)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in out, out[-4000:]


@pytest.fixture
def package_copy(tmp_path):
    """A copy of the package to plant a bad import in (the checkout stays as it is)."""
    shutil.copytree(ROOT / "milan_fhir", tmp_path / "milan_fhir", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _plant(root: Path, module: str, code: str) -> None:
    path = root / module
    path.write_text(path.read_text() + "\n\n" + code + "\n") if path.exists() else path.write_text(code + "\n")


PLANTED = {
    # a helper below the facade reaching up into the command line, hidden in a function
    "sink-imports-cli": ("_sink.py", "def _late():\n    from ._cli import main\n    return main", {"layers", "facade"}),
    # the public facade imported by a lower layer for a helper
    "client-imports-api": ("_client/_fetch.py", "def _late():\n    from .._api import evaluate\n    return evaluate",
                           {"layers", "facade"}),
    # the package's own __init__ importing the command line
    "init-imports-cli": ("__init__.py", "from ._cli import main as _main", {"cli-top"}),
    # a cycle inside the command line: the shared helpers importing a command (which imports them)
    "cli-cycle": ("_cli/_common.py", "def _late():\n    from . import evaluate\n    return evaluate", {"acyclic"}),
    # a new top-level module nobody placed in a layer
    "unplaced-module": ("_stray.py", "X = 1", {"layers"}),
    # a writer reading FHIR through an adapter
    "writer-imports-adapter": ("_writers/table.py", "def _late():\n    from .._adapters import build_records\n"
                               "    return build_records", {"writers", "layers"}),
}


@pytest.mark.parametrize("case", sorted(PLANTED))
def test_a_planted_import_breaks_its_contract(package_copy, case):
    module, code, expected = PLANTED[case]
    _plant(package_copy / "milan_fhir", module, code)
    run = _lint(package_copy)
    out = run.stdout + run.stderr
    assert run.returncode != 0, out[-4000:]
    assert expected <= _broken(out), out[-4000:]

"""The code's shape, checked: no import cycles in syncd/ and benchmarks/ (imports under
TYPE_CHECKING and inside functions included), layers importing only downwards
(docs/ARCHITECTURE.md), and the orchestrator kept to orchestration."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_no_import_cycles_and_layers_respected() -> None:
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "check_imports.py")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no cycles, layers respected" in out.stdout


def test_the_checker_finds_a_cycle(tmp_path) -> None:  # noqa: ANN001
    """The check can fail: a graph with a cycle (through a TYPE_CHECKING import) is reported."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import check_imports
    finally:
        sys.path.pop(0)
    assert check_imports.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert check_imports.violations({"syncd.core.plan": {"syncd.engine"}}) == [
        "syncd.core.plan (core) imports syncd.engine (runtime)"]
    pkg = tmp_path / "syncd"
    pkg.mkdir()
    (pkg / "x.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from syncd.y import Y\n")
    found = set(check_imports.imports_of("syncd.x", pkg / "x.py", {"syncd.x", "syncd.y"}))
    assert found == {"syncd.y"}


def test_the_engine_is_only_the_orchestrator() -> None:
    lines = (REPO / "syncd" / "engine.py").read_text().count("\n")
    assert lines <= 450, f"syncd/engine.py has {lines} lines: move what is not orchestration into its own module"

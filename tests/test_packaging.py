"""The wheel carries the catalog and the labels, and installs the console script."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from .conftest import REPO

pytestmark = pytest.mark.slow


def test_wheel_ships_catalog_labels_and_entry_point(tmp_path):
    pytest.importorskip("setuptools")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    wheel = next(tmp_path.glob("mobilenet_zoo-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert "zoo/catalog.yaml" in names and "zoo/data/imagenet_labels.txt" in names
        assert "zoo/py.typed" in names  # PEP 561: type checkers read our annotations
        assert "zoo/data/imagenet_synsets.txt" in names
        assert zf.read("zoo/catalog.yaml") == (REPO / "catalog.yaml").read_bytes()   # a copy, not a link
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "mobilenet-zoo = mobilenet_zoo_cli.launch:main" in zf.read(entry_points).decode()
        assert not any(n.startswith("tests/") for n in names)


def test_no_module_imports_click_itself():
    """typer 0.28 carries its own copy of click and no longer installs click: a direct
    ``import click`` works where click happens to be installed and crashes in a fresh venv
    (only a fallback inside ``except ImportError:`` may name it, for older typers)."""
    import ast

    def imported(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        return [node.module or ""] if isinstance(node, ast.ImportFrom) else []

    offenders = []
    for path in sorted([*REPO.glob("cli/*.py"), *REPO.glob("zoo/**/*.py")]):
        tree = ast.parse(path.read_text(), str(path))
        fallbacks = {id(node) for handler in ast.walk(tree) if isinstance(handler, ast.ExceptHandler)
                     for node in ast.walk(handler)}
        offenders += [f"{path.relative_to(REPO)}:{node.lineno}" for node in ast.walk(tree)
                      if id(node) not in fallbacks
                      and any(name == "click" or name.startswith("click.") for name in imported(node))]
    assert offenders == [], offenders

"""pipelines/ keeps its floors: every import at the top, every arrow down, no cycles (tests/import_graph.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pipelines
from tests.import_graph import sources_of, violations

ROOT = Path(__file__).resolve().parents[1]


def _packages(sources: dict[str, str]) -> set[str]:
    return {name for name in sources if (ROOT / name.replace(".", "/") / "__init__.py").exists()}


def test_pipelines_imports_point_down_and_stand_at_the_top():
    sources = sources_of(ROOT)
    problems = violations(sources, pipelines.FLOORS, _packages(sources))
    assert not problems, "\n".join(problems)


def test_every_package_stands_on_a_floor():
    packages = {p.name for p in (ROOT / "pipelines").iterdir() if (p / "__init__.py").exists()}
    placed = {package for floor in pipelines.FLOORS for package in floor}
    assert packages <= placed, f"on no floor: {sorted(packages - placed)}"


# The six upward imports issue 33 found, each put back into its module as it stood: the check must name each one.
UPWARD = {
    "pipelines.core.cli": "def quiet():\n    from pipelines.runners.tensorflow_import import settle\n",
    "pipelines.config.selection": "from pipelines.trt.loadability import require_gpu_host\n"
    "from pipelines.serving.settings import ServerSettings\n",
    "pipelines.data.labels": "from pipelines.runners.torchvision_compat import import_torchvision\n",
    "pipelines.data.mnist_sources": "from pipelines.runners import tensorflow_import\n",
    "pipelines.runners.reference": "from pipelines.byom import sources\n",
    "pipelines.runners.runtimes": "from pipelines.model_repository import ensemble\n",
}


@pytest.mark.parametrize("module", sorted(UPWARD))
def test_the_check_refuses_each_upward_import_found_before(module):
    sources = sources_of(ROOT)
    sources[module] = sources[module] + "\n" + UPWARD[module]
    for line in (line for line in UPWARD[module].splitlines() if " import " in line):
        target = line.split()[1]  # a module since moved down (runners' framework imports) put back as it stood
        name = target if target.count(".") > 1 else f"{target}.{line.split()[3]}"
        sources.setdefault(name, "")
    problems = [p for p in violations(sources, pipelines.FLOORS, _packages(sources)) if p.startswith(module + ":")]
    for line in UPWARD[module].splitlines():
        if " import " in line:
            target = line.split()[1]
            assert any(target in p and "upward" in p for p in problems), (line, problems)


def test_the_check_refuses_a_cycle_within_a_package():
    sources = sources_of(ROOT)
    sources["pipelines.core.scratch"] += "\nfrom pipelines.core import atomic\n"
    problems = violations(sources, pipelines.FLOORS, _packages(sources))
    cycle = "circular import: pipelines.core.atomic -> pipelines.core.scratch -> pipelines.core.atomic"
    assert any(cycle in p for p in problems), problems


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("def f():\n    import json\n", "`json` imported inside a function (not a heavy optional framework)"),
        ("def f():\n    import torch\n", "`torch` imported inside a function (not marked"),
        ("def f():\n    from pipelines.core import atomic\n", "pipelines.core.atomic imported inside a function"),
    ],
)
def test_the_check_refuses_a_function_level_import(body, expected):
    sources = sources_of(ROOT)
    sources["pipelines.config.dtypes"] += "\n" + body
    problems = violations(sources, pipelines.FLOORS, _packages(sources))
    assert any(expected in p for p in problems), problems


def test_a_marked_heavy_import_inside_a_function_passes():
    sources = {"pipelines.core.x": "def f():\n    import torch  # lazy: torch takes seconds to import\n"}
    assert violations(sources, pipelines.FLOORS, set()) == []


def test_every_module_is_named_in_its_package_docstring():
    """Each package's `__init__.py` says what it owns: a module it does not name is one a reader cannot find."""
    unnamed = []
    for init in sorted((ROOT / "pipelines").glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        unnamed += [
            f"{init.parent.name}/{m.stem}"
            for m in sorted(init.parent.glob("*.py"))
            if m.stem != "__init__" and f"`{m.stem}`" not in doc
        ]
    assert not unnamed, f"not named in their package's docstring: {unnamed}"

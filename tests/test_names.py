"""Names say which: every public top-level function or class under pipelines/ is defined in exactly one module, so
`load`, `build` or `read` never mean two different things (issue 33)."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

from tests.import_graph import sources_of

ROOT = Path(__file__).resolve().parents[1]


def duplicate_names(sources: Mapping[str, str]) -> dict[str, list[str]]:
    """{name: the modules defining it} for each public (no leading underscore) top-level function or class that more
    than one module of `sources` ({module: source}) defines."""
    homes: dict[str, list[str]] = {}
    for module, source in sorted(sources.items()):
        for node in ast.parse(source).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith(
                "_"
            ):
                homes.setdefault(node.name, []).append(module)
    return {name: modules for name, modules in sorted(homes.items()) if len(set(modules)) > 1}


def test_each_public_name_in_pipelines_has_one_home():
    duplicates = duplicate_names(sources_of(ROOT))
    assert not duplicates, "\n".join(f"{name}: {', '.join(modules)}" for name, modules in duplicates.items())


def test_the_scan_names_a_duplicate():
    sources = {
        "pipelines.a": "def load(path):\n    return path\n\nclass Row:\n    pass\n\ndef _private():\n    pass\n",
        "pipelines.b": "async def load():\n    pass\n\ndef _private():\n    pass\n\ndef other():\n    pass\n",
        "pipelines.c": "class Row:\n    pass\n",
    }
    assert duplicate_names(sources) == {"Row": ["pipelines.a", "pipelines.c"], "load": ["pipelines.a", "pipelines.b"]}

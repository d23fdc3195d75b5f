"""DVC dependencies you can trust: every stage lists the project code it runs.

Each stage's command is `python -m <module>`; the files it needs are that module's import closure
within the project (lazy imports inside functions included), its primary Hydra config, and the
files its code copies at run time. A stage that lacks one would be skipped by `dvc repro` after that
file changed.
"""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, entry_config

PIPELINES = [ROOT / "dvc.yaml", ROOT / "gpu" / "dvc.yaml"]
PACKAGES = ("pipelines", "train", "export", "serve", "evaluate")
# Files a module copies or serves at run time rather than imports; each key must still name its files.
RUNTIME_FILES = {
    "pipelines/serving/embedded.py": ["serve/standin_backends"],
    "pipelines/model_repository/assembly.py": ["serve/ensemble_steps", "pipelines/data/images.py"],
}


def module_file(name: str) -> Path | None:
    """The project file of a dotted module name (None: not ours, or a package's empty __init__)."""
    if name.split(".")[0] not in PACKAGES:
        return None
    path = ROOT / (name.replace(".", "/") + ".py")
    return path if path.is_file() else None


def imported(path: Path) -> set[Path]:
    """Project files that `path` imports, anywhere in its body."""
    found: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        found |= {f for f in map(module_file, names) if f is not None}
    return found


def needed(module: str) -> set[str]:
    """Every project file a `python -m <module>` run needs, relative to the project root."""
    start = module_file(module)
    assert start is not None, f"no module {module}"
    seen, todo = set(), [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo += imported(path) - seen
    files = {str(p.relative_to(ROOT)) for p in seen}
    for path in list(files):
        files |= set(RUNTIME_FILES.get(path, []))
    config = entry_config(start)
    if config:
        files.add(f"conf/{config}.yaml")
    return files


def stages(pipeline: Path) -> dict[str, dict]:
    """Stage name -> stage, with `foreach` expanded (list items substituted for ${item})."""
    spec = yaml.safe_load(pipeline.read_text())
    common = yaml.safe_load((ROOT / "conf" / "common.yaml").read_text())
    result = {}
    for name, stage in spec["stages"].items():
        if "foreach" not in stage:
            result[name] = stage
            continue
        items = stage["foreach"]
        if items == "${added}":  # conf/added.yaml: name -> source, sample; its template is checked even when empty
            added = yaml.safe_load((ROOT / "conf" / "added.yaml").read_text())["added"]
            for key, item in (added or {"example": {"source": "model.keras", "sample": "sample.npz"}}).items():
                text = yaml.safe_dump(stage["do"]).replace("${key}", key)
                for field, value in item.items():
                    text = text.replace(f"${{item.{field}}}", value)
                result[f"{name}@{key}"] = yaml.safe_load(text)
            continue
        if isinstance(items, str):  # ${classifiers}: a list that conf/common.yaml defines
            items = common[items.strip("${}")]
        for item in items:
            text = yaml.safe_dump(stage["do"]).replace("${item}", str(item))
            result[f"{name}@{item}"] = yaml.safe_load(text)
    return result


def missing(stage: dict) -> list[str]:
    """Files the stage's command needs that none of its deps covers (a dep may be a file or a directory;
    a config file whose values the stage tracks as `params` counts as covered)."""
    module = re.search(r"python -m ([\w.]+)", stage["cmd"]).group(1)
    params = [next(iter(p)) for p in stage.get("params", []) if isinstance(p, dict)]
    deps = [str(d).rstrip("/") for d in [*stage.get("deps", []), *params]]
    return sorted(f for f in needed(module) if not any(f == d or f.startswith(d + "/") for d in deps))


ALL_STAGES = [(pipeline, name) for pipeline in PIPELINES for name in stages(pipeline)]


@pytest.mark.parametrize(("pipeline", "name"), ALL_STAGES, ids=[f"{p.parent.name}/{n}" for p, n in ALL_STAGES])
def test_every_stage_depends_on_the_code_it_runs(pipeline: Path, name: str) -> None:
    assert missing(stages(pipeline)[name]) == [], f"{pipeline.relative_to(ROOT)}: add these to {name}'s deps"


def test_runtime_files_are_still_named_by_their_modules() -> None:
    for module, files in RUNTIME_FILES.items():
        source = (ROOT / module).read_text()
        for file in files:
            assert (ROOT / file).exists() and Path(file).name in source, f"{module} no longer uses {file}"


@pytest.mark.parametrize(
    ("pipeline", "name", "dep"),
    [
        (ROOT / "dvc.yaml", "parity", "pipelines/serving"),
        (ROOT / "dvc.yaml", "parity", "serve/standin_backends"),
        (ROOT / "dvc.yaml", "export_mnist", "pipelines/artifacts/io_signature.py"),
        (ROOT / "gpu" / "dvc.yaml", "tensorrt_resnet50", "pipelines/trt"),
    ],
)
def test_a_removed_dependency_is_reported(pipeline: Path, name: str, dep: str) -> None:
    stage = copy.deepcopy(stages(pipeline)[name])
    assert missing(stage) == []
    stage["deps"].remove(dep)
    assert missing(stage) and all(f == dep or f.startswith(dep + "/") for f in missing(stage))

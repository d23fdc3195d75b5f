"""The import rules of `pipelines/` (its `__init__.py` says them), checked on source text so a self-test can feed it
the imports it must refuse: every import at the top; arrows only down the floors; no cycles; a function-level import
only for a heavy optional framework, marked `# lazy: <why>`."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

# Frameworks that cost seconds to import or are optional where the code runs: the only imports allowed inside a
# function.
HEAVY = frozenset(
    {
        "torch",
        "torchvision",
        "tensorflow",
        "keras",
        "tf2onnx",
        "tensorrt",
        "pytriton",
        "matplotlib",
        "kubernetes",
        "kubernetes_validate",
        "kserve",
        "mlxtend",
        "skimage",
        "onnx",
        "onnxruntime",
        "onnxconverter_common",
        "tritonclient",
        "dvc",
        "PIL",  # not heavy, but absent from the Triton image the ensemble's post-processing step runs in
    }
)
LAZY_MARK = "# lazy:"


@dataclass(frozen=True)
class Import:
    """One import statement of a `pipelines` module: what it names and where it stands."""

    module: str  # the importing module, e.g. pipelines.core.cli
    target: str  # the imported module, absolute
    line: int
    top: bool  # at module level (an `if TYPE_CHECKING:` block or a `try` at module level counts)
    marked: bool  # its first line carries `# lazy: <why>`


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources_of(root: Path) -> dict[str, str]:
    """{module name: source} of every module under root/pipelines."""
    return {module_name(p, root): p.read_text() for p in sorted((root / "pipelines").rglob("*.py"))}


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(
    module: str, source: str, is_package: bool = False, known: frozenset[str] = frozenset()
) -> Iterator[Import]:
    """The modules `source` imports; `from package import name` counts as package.name where that is a module in
    `known`, else as the package."""
    lines = source.splitlines()
    tree = ast.parse(source)
    top_nodes: set[int] = set()  # at module level, also inside module-level if/try/with blocks

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                top_nodes.add(id(child))
                visit(child)

    visit(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, is_package, node)
            targets = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known] or [base]
        else:
            continue
        first = lines[node.lineno - 1]  # the statement's first line: where `grep "# lazy:"` finds it
        marked = LAZY_MARK in first and bool(first.split(LAZY_MARK, 1)[1].strip())
        for target in targets:
            yield Import(module, target, node.lineno, id(node) in top_nodes, marked)


def floor_of(floors: tuple[tuple[str, ...], ...]) -> dict[str, int]:
    return {package: level for level, packages in enumerate(floors) for package in packages}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def violations(sources: Mapping[str, str], floors: tuple[tuple[str, ...], ...], packages: set[str]) -> list[str]:
    """Every breach of the rules, one line each: `module:line: what`. `packages` are the module names that are
    packages (their relative imports resolve from themselves)."""
    floor = floor_of(floors)
    problems: list[str] = []
    graph: dict[str, set[str]] = {name: set() for name in sources}
    for module, source in sources.items():
        seen: set[tuple[int, str]] = set()
        for imp in imports(module, source, module in packages, frozenset(sources)):
            internal = imp.target == "pipelines" or imp.target.startswith("pipelines.")
            where = f"{module}:{imp.line}"
            if not internal:
                root = imp.target.split(".")[0]
                if not imp.top and (root not in HEAVY or not imp.marked) and (imp.line, root) not in seen:
                    seen.add((imp.line, root))
                    why = "not a heavy optional framework" if root not in HEAVY else f"not marked `{LAZY_MARK} <why>`"
                    problems.append(f"{where}: `{root}` imported inside a function ({why}); import it at the top")
                continue
            if imp.target not in sources:
                continue  # a name imported from a module, not a module
            if not imp.top and (imp.line, imp.target) not in seen:
                seen.add((imp.line, imp.target))
                problems.append(f"{where}: {imp.target} imported inside a function; import it at the top")
            mine, theirs = _package(module), _package(imp.target)
            if mine and theirs and mine != theirs:
                if mine not in floor or theirs not in floor:
                    unknown = mine if mine not in floor else theirs
                    problems.append(f"{where}: package {unknown!r} stands on no floor (pipelines.FLOORS)")
                elif floor[theirs] >= floor[mine]:
                    problems.append(
                        f"{where}: {imp.target} is imported upward: {theirs} (floor {floor[theirs]}) "
                        f"from {mine} (floor {floor[mine]})"
                    )
            if imp.target != module and not module.startswith(imp.target + "."):
                graph[module].add(imp.target)
    problems += [f"{cycle[0]}: circular import: {' -> '.join(cycle)}" for cycle in _cycles(graph)]
    return problems


def _cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected set of modules (Tarjan), named from its smallest member."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            members: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(_path(graph, sorted(members)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _path(graph: Mapping[str, set[str]], members: list[str]) -> list[str]:
    """A shortest cycle through the first member, within the set."""
    start, inside = members[0], set(members)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if nxt in inside and nxt not in previous:
                    previous[nxt] = node
                    following.append(nxt)
        frontier = following
    return [*members, start]

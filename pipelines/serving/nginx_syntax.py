"""nginx's configuration syntax: directives as nested tuples, written out as nginx.conf text.

Shared by the front's configuration (`front_conf`) and the benchmark's bare nginx
(`pipelines/performance/front_cost.py`); knows nothing of what either configures.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

Directive = tuple  # ("name", "arg", ...) or ("name", "arg", ..., [block directives])


def render_nginx(directives: Sequence[Directive], indent: int = 0) -> str:
    """nginx's configuration syntax for nested directives; arguments with spaces or quotes are quoted."""
    out = []
    pad = "    " * indent
    for directive in directives:
        *words, last = directive
        block = last if isinstance(last, list) else None
        words = words if block is not None else [*words, last]
        text = " ".join(_word(str(w)) for w in words)
        if block is None:
            out.append(f"{pad}{text};")
        else:
            out += [f"{pad}{text} {{", render_nginx(block, indent + 1), f"{pad}}}"] if block else [f"{pad}{text} {{}}"]
    return "\n".join(out)


def temp_paths(work: Path) -> list[Directive]:
    """nginx's temporary directories inside `work` (its defaults lie under its prefix, not ours to write)."""
    return [(f"{kind}_temp_path", str(work / kind)) for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")]


def _word(word: str) -> str:
    if word and not any(c in word for c in " \t\"'{};#\\"):
        return word
    return "'" + word.replace("\\", "\\\\").replace("'", "\\'") + "'"

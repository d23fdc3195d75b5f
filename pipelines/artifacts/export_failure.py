"""An export that failed, recorded where its files would be, so that one model's failure is that model's.

The `export_added@<network>` stage writes its folder with this record alone when the user's model cannot be
exported (it does not run, a conversion fails, an export does not match its source): the stage succeeds, so
`dvc repro` goes on with every other model; the repository leaves the model out, parity fails it with this
reason, the benchmark skips it, and the gate names it. The record is part of the stage's output, so DVC
reruns the export when the source or the spec changes.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.config.spec import ModelSpec
from pipelines.core.atomic import atomic_path

FILENAME = "export_failed.json"


def record(folder: Path, reason: str) -> None:
    """`folder` (an export's) with the failure record alone, in place of the files the export would have made."""
    with atomic_path(folder, directory=True) as tmp:
        (tmp / FILENAME).write_text(json.dumps({"export_failed": reason}, indent=2) + "\n")


def reason(spec: ModelSpec) -> str | None:
    """Why the export of `spec`'s file failed, where its export recorded a failure; else None."""
    path = Path(spec.artifact).parent / FILENAME
    if not path.is_file():
        return None
    return str(json.loads(path.read_text()).get("export_failed") or "the export failed")

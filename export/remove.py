"""`python -m export.remove name=<name>`: take a model added with `python -m export.add` out of the pipeline.

Removes its spec files and its entry in conf/added.yaml, and its exports and reports; the source
file is the user's and stays. The next `dvc repro` serves and checks the remaining models.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from pipelines.byom import added_index
from pipelines.core.cli import hydra_main
from pipelines.core.paths import project_path


def run(cfg: Any) -> list[Path]:
    name = str(cfg.name)
    removed, models = added_index.remove_added(name)
    paths = cfg.paths
    outputs = [
        Path(paths.added) / name,
        Path(paths.export_reports) / f"{name}.json",
        *(
            Path(folder) / f"{m}.json"
            for m in models
            for folder in (paths.parity_reports, paths.parity_metrics, paths.benchmark_reports, paths.benchmark_metrics)
        ),
    ]
    for path in outputs:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
            removed.append(path)
    print(f"removed {name}: " + ", ".join(project_path(p) for p in removed), flush=True)
    return removed


main = hydra_main("remove", run, __doc__)

if __name__ == "__main__":
    main()

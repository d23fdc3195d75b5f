"""`python -m export.add source=<model file> name=<name>`: bring your own model to the pipeline.

Reads the tensors (names, dtypes, shapes) from the model's own signature, then writes
`conf/network/<name>.yaml`, one `conf/model/<name>_<format>.yaml` per served format, and lists
them in `conf/added.yaml`, which the CPU catalog and `dvc.yaml` read: the next `dvc repro` exports,
serves and checks the model, and the gate watches it like the demo models. The source stays where
it is (a dependency of its export stage, never copied into git). Any problem is one line, exit 2,
and leaves conf/ exactly as it was. `python -m export.remove name=<name>` takes it out again.
"""

from __future__ import annotations

from typing import Any

from pipelines.byom import added_index, derivation
from pipelines.core.cli import hydra_main


def run(cfg: Any) -> added_index.Added:
    request = derivation.request_from_config(cfg)
    result = added_index.add(request)
    print(result.summary(), flush=True)
    return result


main = hydra_main("add", run, __doc__)

if __name__ == "__main__":
    main()

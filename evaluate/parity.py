"""`python -m evaluate.parity model=<name>|all`: prove that Triton serves what the framework computes.

Exit 0 when every checked model passes, 1 on a parity failure, 2 on usage or environment errors
(unknown model, missing artifact, server unreachable). Reports: reports/parity/<model>.json.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipelines import parity
from pipelines.atomic import write_json
from pipelines.cli import EXIT_FAILED, EXIT_OK, hydra_main
from pipelines.errors import ConfigError
from pipelines.spec import ModelSpec, model_spec, served_specs
from pipelines.triton_server import serve

log = logging.getLogger(__name__)


def selected(cfg: Any) -> list[ModelSpec]:
    """`model=all`: the whole catalog; otherwise the chosen model, with any command-line overrides."""
    if cfg.model.name == "all":
        return list(served_specs(cfg.models).values())
    if cfg.model.name not in cfg.models:
        raise ConfigError(f"model {cfg.model.name!r} is not in the served catalog (conf/models.yaml)")
    return [model_spec(str(cfg.model.name), cfg.model)]


def check(cfg: Any) -> list[dict[str, Any]]:
    """Run parity for the selected models against one server; write and return their reports."""
    specs = selected(cfg)
    protocols = parity.check_protocols([str(p) for p in cfg.protocols])
    prepared = [parity.prepare(spec, cfg.paths.data) for spec in specs]
    reports = []
    with serve(cfg.server, cfg.paths.model_repository) as endpoints:
        for item in prepared:
            served, batching = parity.collect(item, endpoints, protocols)
            reports.append(parity.evaluate(item, served, batching, str(cfg.server.kind)))
    for report in reports:
        write_json(Path(cfg.paths.parity_reports) / f"{report['model']}.json", report)
    return reports


def run(cfg: Any) -> int:
    reports = check(cfg)
    for report in reports:
        print(parity.format_table(report) + "\n", flush=True)
    failed = [r["model"] for r in reports if not r["passed"]]
    if failed:
        print(f"parity FAILED for: {', '.join(failed)}", flush=True)
        return EXIT_FAILED
    print(f"parity passed for: {', '.join(r['model'] for r in reports)}", flush=True)
    return EXIT_OK


main = hydra_main("parity", run, __doc__)

if __name__ == "__main__":
    main()

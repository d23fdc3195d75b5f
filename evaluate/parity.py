"""`python -m evaluate.parity model=<name>|all`: prove that Triton serves what the framework computes.

`localize=true model=<an ONNX model>`: blame the first layer where it differs (pipelines/comparison/job.py);
writes reports/parity_adhoc/localize/<model>.json and .png, exit 1 when a tensor is over the bound.

Exit 0 when every checked model passes, 1 on a parity failure, 2 on usage or environment errors
(unknown model, missing artifact, stale repository, server unreachable, no GPU for a TensorRT model),
3 on a bug. Reports: reports/parity/<model>.json and its headline figures reports/parity_metrics/<model>.json
(reports/parity_gpu*/ for the GPU profile); a run whose settings differ from conf/ writes reports/parity_adhoc/.
`record_failure=true` (the DVC stages): a failed proof is recorded in its reports and exits 0, so that dvc.lock
always records what this code proved; `python -m evaluate.gate` then fails on it (exit 1).
"""

from __future__ import annotations

from omegaconf import DictConfig

from pipelines.comparison.job import ParityJob, check_parity, localize_model
from pipelines.config.selection import engines_outside
from pipelines.core.cli import EXIT_FAILED, EXIT_OK, hydra_main


def run(cfg: DictConfig) -> int:
    job = ParityJob.from_cfg(cfg)
    if job.localize is not None:
        result, out = localize_model(job)
        print(result.table(), flush=True)
        print(f"reports: {out}/{job.specs[0].name}.json and .png", flush=True)
        return EXIT_FAILED if result.first is not None else EXIT_OK
    reports = check_parity(job)
    for report in reports:
        print(report.table() + "\n", flush=True)
    if job.whole_catalog and (outside := engines_outside(job.catalog)):
        print(
            f"note: the TensorRT models ({', '.join(outside)}) are not part of this (CPU) profile; "
            "on a GPU host with TensorRT 10 run `make pipeline-gpu`",
            flush=True,
        )
    failed = [r.model for r in reports if not r.passed]
    if failed:
        print(f"parity FAILED for: {', '.join(failed)}", flush=True)
        if cfg.record_failure:
            print("recorded in their reports (record_failure=true): the gate fails on them", flush=True)
            return EXIT_OK
        return EXIT_FAILED
    print(f"parity passed for: {', '.join(r.model for r in reports)}", flush=True)
    return EXIT_OK


main = hydra_main("parity", run, __doc__)

if __name__ == "__main__":
    main()

"""`python -m evaluate.hardening`: the requests that hurt Triton 2.51, sent through the front, good requests timed.

Serves the catalog's repository as `serve.triton` does (one supervised server behind the nginx
front), runs each case of pipelines/performance/hostile.py for `seconds_per_case`, then crashes the server with
the 90-byte JSON request sent straight to its own port and times its supervised return. Writes
`out` (JSON) and prints a table. Figures are measured, never judged against a time; exit 1 when a
hostile request got past the front and the server died, or a good request failed; 2 without nginx
and its njs module.
"""

from __future__ import annotations

from omegaconf import DictConfig

from pipelines.core.atomic import write_json
from pipelines.core.cli import EXIT_FAILED, hydra_main
from pipelines.performance.hardening_check import HardeningJob, check_hardening, print_table


def run(cfg: DictConfig) -> dict | int:
    job = HardeningJob.from_cfg(cfg)
    report = check_hardening(job)
    write_json(job.out, report)
    print_table(report)
    return report if report["passed"] else EXIT_FAILED


main = hydra_main("hardening", run, __doc__)

if __name__ == "__main__":
    main()

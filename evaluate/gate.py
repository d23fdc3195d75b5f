"""`python -m evaluate.gate`: fail the merge when parity got worse than on the main branch.

Compares this run's parity headline figures (`reports/parity_metrics/`, and the GPU profile's
where present) with a baseline: the reports committed at a git revision (default: the merge base
with main), read through DVC, or another run's tree or metrics directory (`baseline_dir=`); `baseline=none` for
a project's first proof. A baseline with no figures is a usage error, never a pass. Exit 0 pass, 1 fail (a model fails
parity, served accuracy differs from the framework's, framework accuracy dropped, a needed
tolerance grew, a model is gone, a serving-cost ratio of the benchmark stage worsened beyond
`serving_cost_growth`), 2 usage errors. Prints a Markdown table and writes it to `output`.
"""

from __future__ import annotations

from omegaconf import DictConfig

from pipelines.core.atomic import write_text
from pipelines.core.cli import EXIT_FAILED, EXIT_OK, hydra_main
from pipelines.merge_gate.baseline_check import GateSettings, dvc_diffs, gate, metric_groups


def run(cfg: DictConfig) -> int:
    settings = GateSettings.from_cfg(cfg)
    text, passed, rev = gate(settings)
    print(text, flush=True)
    if settings.dvc_diffs and rev:  # DVC diffs against a git revision (not a directory, nor baseline=none)
        text += dvc_diffs(rev, settings.output.parent / "plots", metric_groups(settings))
    write_text(settings.output, text)
    return EXIT_OK if passed else EXIT_FAILED


main = hydra_main("gate", run, __doc__)

if __name__ == "__main__":
    main()

"""`python -m evaluate.doc_figures [check=true]`: the tables in docs/ rendered from the committed reports.

A document marks each generated table `<!-- figures:<name> -->` ... `<!-- /figures -->`
(pipelines/documentation/figures.py names them). Writes the documents whose tables changed;
`check=true` writes nothing and exits 1 naming the documents whose tables are not what the reports
give. `make docs` runs it after a `dvc repro` (or `python -m evaluate.hardening`) changed the reports.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from pipelines.core.atomic import write_text
from pipelines.core.cli import EXIT_FAILED, EXIT_OK, hydra_main
from pipelines.documentation.figures import CommittedReports, marked, render


def run(cfg: DictConfig) -> int:
    reports = CommittedReports(
        Path(str(cfg.paths.hardening_report)),
        Path(str(cfg.paths.benchmark_reports)),
        Path(str(cfg.paths.parity_reports)),
        Path(str(cfg.paths.compatibility_report)),
    )
    stale = []
    for doc in sorted(Path(str(cfg.docs)).glob("*.md")):
        text = doc.read_text()
        if not marked(text):
            continue
        fresh = render(text, reports, str(doc))
        if fresh != text:
            stale.append(str(doc))
            if not cfg.check:
                write_text(doc, fresh)
    if cfg.check and stale:
        print(f"stale figures in {', '.join(stale)}: run `make docs`", flush=True)
        return EXIT_FAILED
    print(f"{'rendered' if stale else 'up to date'}: {', '.join(stale) or 'every marked table'}", flush=True)
    return EXIT_OK


main = hydra_main("doc_figures", run, __doc__)

if __name__ == "__main__":
    main()

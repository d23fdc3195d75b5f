"""`python -m evaluate.lock_check`: fail when the committed dvc.lock is not this commit's.

`dvc repro` writes dvc.lock from the code and params it ran; a commit that changes code or params without it
carries reports of other code. This asks DVC which dependencies differ from the lock and fails, naming the stages
and what changed, before anything is reproduced (`make ci` runs it first; the pre-commit hook before each commit).
Outputs absent from a fresh clone are not stale. Exit 0 fresh, 1 stale, 2 usage (not a DVC project, no dvc).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from pipelines.core.atomic import write_text
from pipelines.core.cli import EXIT_FAILED, EXIT_OK, hydra_main
from pipelines.merge_gate.lock_freshness import (
    dvc_status,
    git_files,
    git_tracked,
    message,
    read_made,
    stale_entries,
    unmatched,
)


def run(cfg: DictConfig) -> int:
    files = git_files()
    tracked = git_tracked(files)
    stale = []
    for dvc_file in cfg.dvc_files:
        lock, made = read_made(str(dvc_file), files)
        entries = stale_entries(dvc_status(str(dvc_file)), tracked, made) + unmatched(lock, made)
        if entries:
            stale.append(message(entries, str(dvc_file)))
            print(stale[-1], flush=True)
        else:
            print(f"{dvc_file}: the lock records this commit's code and params", flush=True)
    if not stale:
        return EXIT_OK
    # where CI takes the gate's table from (job summary, pull-request comment): the gate does not run after this
    write_text(Path(str(cfg.output)), "### Lock check: **FAIL**\n\n```\n" + "\n".join(stale) + "\n```\n")
    return EXIT_FAILED


main = hydra_main("lock_check", run, __doc__)

if __name__ == "__main__":
    main()

"""`python -m evaluate.lock_check`: fail when the committed dvc.lock is not this commit's.

`dvc repro` writes dvc.lock from the code and params it ran; a commit that changes code or params without it
carries reports of other code. This asks DVC which dependencies differ from the lock and fails, naming the stages
and what changed, before anything is reproduced (`make ci` runs it first; the pre-commit hook before each commit).
Outputs absent from a fresh clone are not stale. Exit 0 fresh, 1 stale, 2 usage (not a DVC project, no dvc).
"""

from __future__ import annotations

from omegaconf import DictConfig

from pipelines.core.cli import EXIT_FAILED, EXIT_OK, hydra_main
from pipelines.merge_gate.lock_freshness import dvc_status, git_tracked, message, stale_entries


def run(cfg: DictConfig) -> int:
    tracked = git_tracked()
    status = EXIT_OK
    for dvc_file in cfg.dvc_files:
        entries = stale_entries(dvc_status(str(dvc_file)), tracked)
        if entries:
            print(message(entries, str(dvc_file)), flush=True)
            status = EXIT_FAILED
        else:
            print(f"{dvc_file}: the lock records this commit's code and params", flush=True)
    return status


main = hydra_main("lock_check", run, __doc__)

if __name__ == "__main__":
    main()

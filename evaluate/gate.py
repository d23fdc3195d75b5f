"""`python -m evaluate.gate`: fail the merge when parity got worse than on the main branch.

Compares this run's parity headline figures (`reports/parity_metrics/`, and the GPU profile's
where present) with a baseline: the reports committed at a git revision (default: the merge base
with main), read through DVC, or a directory of such files. Exit 0 pass, 1 fail (a model fails
parity, served accuracy differs from the framework's, framework accuracy dropped, a needed
tolerance grew, a model is gone), 2 usage errors. Prints a Markdown table and writes it to `output`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from pipelines.atomic import write_text
from pipelines.cli import EXIT_FAILED, EXIT_OK, hydra_main
from pipelines.errors import ArtifactError, ConfigError, HostError
from pipelines.gate import Thresholds, judge


def read_dir(directory: Path) -> dict[str, dict[str, Any]]:
    """model -> headline figures, from a directory of <model>.json."""
    return {p.stem: parse(p.read_text(), str(p)) for p in sorted(Path(directory).glob("*.json"))}


def parse(text: str, where: str) -> dict[str, Any]:
    try:
        figures = json.loads(text)
    except ValueError as exc:
        raise ArtifactError(f"{where} is not readable JSON ({exc})") from None
    if not isinstance(figures, dict):
        raise ArtifactError(f"{where} holds no headline figures (a JSON object)")
    return figures


def current(cfg: Any) -> dict[str, dict[str, Any]]:
    figures: dict[str, dict[str, Any]] = {}
    for directory in cfg.metrics_dirs:
        figures.update(read_dir(Path(str(directory))))
    if not figures:
        raise ArtifactError(f"no parity figures in {', '.join(map(str, cfg.metrics_dirs))}: run the pipeline first "
                            "(`dvc repro`)")
    return figures


def git(*args: str) -> str:
    try:
        proc = subprocess.run(["git", *args], capture_output=True, text=True, timeout=60)
    except FileNotFoundError as exc:
        raise HostError("the gate reads the baseline from git, which is not installed") from exc
    if proc.returncode != 0:
        raise ConfigError(f"git {' '.join(args)}: {(proc.stderr.strip().splitlines() or ['failed'])[-1]}")
    return proc.stdout.strip()


def baseline_revision(cfg: Any) -> str:
    if str(cfg.baseline) != "merge-base":
        return git("rev-parse", "--verify", "--quiet", f"{cfg.baseline}^{{commit}}")
    for ref in (str(cfg.main_branch), f"origin/{cfg.main_branch}"):
        try:
            return git("merge-base", "HEAD", ref)
        except ConfigError:
            continue
    raise ConfigError(f"no branch {cfg.main_branch!r} or origin/{cfg.main_branch} to find the merge base with: "
                      "fetch it (actions/checkout: fetch-depth 0) or give baseline=<rev>")


def at_revision(rev: str, directories: list[str]) -> dict[str, dict[str, Any]]:
    """The headline figures committed at `rev`, read through DVC (git-tracked or DVC-tracked alike)."""
    from dvc.api import DVCFileSystem

    fs = DVCFileSystem(".", rev=rev)
    figures: dict[str, dict[str, Any]] = {}
    for directory in directories:
        if not fs.isdir(directory):
            continue
        for path in sorted(fs.find(directory)):
            if path.endswith(".json"):
                figures[Path(path).stem] = parse(fs.read_text(path), f"{path} at {rev[:12]}")
    return figures


def run(cfg: Any) -> int:
    now = current(cfg)
    directories = [str(d) for d in cfg.metrics_dirs]
    if cfg.baseline_dir:
        if not Path(str(cfg.baseline_dir)).is_dir():
            raise ConfigError(f"baseline_dir {cfg.baseline_dir} is not a directory")
        where, baseline = str(cfg.baseline_dir), read_dir(Path(str(cfg.baseline_dir)))
    else:
        rev = baseline_revision(cfg)
        where, baseline = f"{cfg.baseline} ({rev[:12]})", at_revision(rev, directories)
    thresholds = Thresholds(**{k: float(v) for k, v in cfg.thresholds.items()})
    verdict = judge(baseline, now, thresholds)
    title = f"Parity gate against {where}" + ("" if baseline else " (no reports there: nothing to compare)")
    text = verdict.markdown(title)
    print(text, flush=True)
    if cfg.dvc_diffs and not cfg.baseline_dir:
        text += dvc_diffs(rev, Path(str(cfg.output)).parent / "plots")
    write_text(str(cfg.output), text)
    return EXIT_OK if verdict.passed else EXIT_FAILED


def dvc_diffs(rev: str, plots_dir: Path) -> str:
    """DVC's own view for the job summary: `dvc metrics diff --md` as Markdown, `dvc plots diff` as HTML."""
    metrics = subprocess.run(["dvc", "metrics", "diff", "--md", rev], capture_output=True, text=True, timeout=300)
    plots = subprocess.run(["dvc", "plots", "diff", rev, "-o", str(plots_dir)], capture_output=True, text=True,
                           timeout=300)
    parts = ["", f"#### `dvc metrics diff {rev[:12]}`", "", metrics.stdout.strip() or "(no changes)"]
    if plots.returncode == 0:
        parts += ["", f"Training curves against {rev[:12]}: `{plots_dir}/index.html` (`dvc plots diff`)"]
    return "\n".join(parts) + "\n"


main = hydra_main("gate", run, __doc__)

if __name__ == "__main__":
    main()

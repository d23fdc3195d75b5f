"""The merge gate's run: its settings typed once, the baseline (a git revision read through DVC, or another
run's tree), this run's figures, and the verdict of `rules` on them, as Markdown; DVC's own diffs beside it.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from pipelines.core.errors import ArtifactError, ConfigError, HostError
from pipelines.merge_gate.rules import Thresholds, judge_gate, judge_serving

NO_BASELINE = "none"  # baseline=none: a project's first proof, with nothing committed to compare with


@dataclass(frozen=True)
class GateSettings:
    """`conf/gate.yaml`, typed once at the entry: what is compared with what, and how strictly."""

    baseline: str  # a git revision, "merge-base", or "none" (NO_BASELINE)
    main_branch: str
    baseline_dir: Path | None  # another run's project tree instead of a revision
    metrics_dirs: list[str]  # the profiles' parity headline figures
    serving_dirs: list[str]  # the benchmark stage's headline ratios
    thresholds: Thresholds
    output: Path
    dvc_diffs: bool
    train_metrics: str  # paths.train_metrics: DVC's metrics diff shows it beside parity's

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> GateSettings:
        try:
            thresholds = Thresholds(**{str(k): float(v) for k, v in cfg.thresholds.items()})
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                "thresholds must be accuracy_drop, tolerance_growth, tolerance_floor, serving_cost_growth (numbers): "
                f"{exc}"
            ) from None
        baseline_dir = Path(str(cfg.baseline_dir)) if cfg.baseline_dir else None
        if baseline_dir is not None and not baseline_dir.is_dir():
            raise ConfigError(f"baseline_dir {baseline_dir} is not a directory")
        return cls(
            baseline=str(cfg.baseline),
            main_branch=str(cfg.main_branch),
            baseline_dir=baseline_dir,
            metrics_dirs=[str(d) for d in cfg.metrics_dirs],
            serving_dirs=[str(d) for d in cfg.serving_dirs],
            thresholds=thresholds,
            output=Path(str(cfg.output)),
            dvc_diffs=bool(cfg.dvc_diffs),
            train_metrics=str(cfg.paths.train_metrics),
        )


def current(directories: list[str]) -> dict[str, dict[str, Any]]:
    figures = read_dirs(Path("."), directories)
    if not figures:
        raise ArtifactError(f"no parity figures in {', '.join(directories)}: run the pipeline first (`dvc repro`)")
    return figures


def baseline_revision(settings: GateSettings) -> str:
    if settings.baseline != "merge-base":
        return git("rev-parse", "--verify", "--quiet", f"{settings.baseline}^{{commit}}")
    for ref in (settings.main_branch, f"origin/{settings.main_branch}"):
        try:
            return git("merge-base", "HEAD", ref)
        except ConfigError:
            continue
    raise ConfigError(
        f"no branch {settings.main_branch!r} or origin/{settings.main_branch} to find the merge base with: "
        "fetch it (actions/checkout: fetch-depth 0) or give baseline=<rev>"
    )


def gate(settings: GateSettings) -> tuple[str, bool, str]:
    """This run's figures against the baseline's: the Markdown report, whether the merge may go ahead, and the
    baseline's git revision (empty for a baseline_dir)."""
    now = current(settings.metrics_dirs)
    directories = settings.metrics_dirs
    rev = ""
    if settings.baseline == NO_BASELINE:  # a project's first proof: each model must pass, nothing to grow from
        where, baseline = "no baseline (baseline=none: every model must pass)", {}
    elif settings.baseline_dir is not None:
        where, baseline = str(settings.baseline_dir), baseline_dir_figures(settings.baseline_dir, directories)
    else:
        rev = baseline_revision(settings)
        where, baseline = f"{settings.baseline} ({rev[:12]})", at_revision(rev, directories)
    if not baseline and settings.baseline != NO_BASELINE:  # before: "nothing to compare: PASS", exit 0
        raise ConfigError(
            f"the baseline {where} has no parity figures ({', '.join(directories)}): nothing to compare with; "
            "give a baseline that has them (baseline=<rev> or baseline_dir=<project tree or metrics directory>), "
            "or baseline=none for a project's first proof"
        )
    thresholds = settings.thresholds
    verdict = judge_gate(baseline, now, thresholds)
    title = f"Parity gate against {where}"
    text = verdict.markdown(title)
    serving_now = read_dirs(Path("."), settings.serving_dirs)
    serving = None
    if serving_now:  # the benchmark stage's ratios, when this run has them
        if settings.baseline == NO_BASELINE:
            serving_before = {}
        elif settings.baseline_dir is not None:  # a metrics directory alone holds no serving figures
            serving_before = read_dirs(settings.baseline_dir, settings.serving_dirs)
        else:
            serving_before = at_revision(rev, settings.serving_dirs)
        serving = judge_serving(serving_before, serving_now, thresholds)
        text += "\n" + serving.markdown(
            f"Serving-cost gate against {where} (fails beyond {thresholds.serving_cost_growth:g}x)"
        )
    return text, verdict.passed and (serving is None or serving.passed), rev


def baseline_dir_figures(root: Path, directories: list[str]) -> dict[str, dict[str, Any]]:
    """The figures of `baseline_dir`: a project tree (the metrics directories below it, as a CI run's uploaded
    tree has them), or one metrics directory itself (`/tmp/main-reports/parity_metrics`), named as in
    `metrics_dirs`."""
    figures = read_dirs(root, directories)
    if figures or not any(root.glob("*.json")):
        return figures
    named = [d for d in directories if Path(d).name == root.name]
    if not named:
        raise ConfigError(
            f"baseline_dir {root} holds figures but is named like none of the metrics directories "
            f"({', '.join(Path(d).name for d in directories)}): give the project tree above it, or the directory "
            "under its own name"
        )
    return read_dirs(root.parent, [root.name])


def metric_groups(settings: GateSettings) -> list[list[str]]:
    """DVC's metrics in tables that fit a pull-request comment: training and parity figures; serving-cost ratios."""
    groups = [[settings.train_metrics, *settings.metrics_dirs], list(settings.serving_dirs)]
    return [present for group in groups if (present := [p for p in group if Path(p).exists()])]


def read_dirs(root: Path, directories: list[str]) -> dict[str, dict[str, Any]]:
    """'<metrics dir>/<model>' -> headline figures, for each metrics directory under `root` (the profile in
    the key: the CPU and GPU catalogs serve models of the same names)."""
    figures: dict[str, dict[str, Any]] = {}
    for directory in directories:
        for path in sorted((root / directory).glob("*.json")):
            figures[f"{Path(directory).name}/{path.stem}"] = parse_figures(path.read_text(), str(path))
    return figures


def parse_figures(text: str, where: str) -> dict[str, Any]:
    try:
        figures = json.loads(text)
    except ValueError as exc:
        raise ArtifactError(f"{where} is not readable JSON ({exc})") from None
    if not isinstance(figures, dict):
        raise ArtifactError(f"{where} holds no headline figures (a JSON object)")
    return figures


def git(*args: str) -> str:
    try:
        proc = subprocess.run(["git", *args], capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError as exc:
        raise HostError("the gate reads the baseline from git, which is not installed") from exc
    if proc.returncode != 0:
        raise ConfigError(f"git {' '.join(args)}: {(proc.stderr.strip().splitlines() or ['failed'])[-1]}")
    return proc.stdout.strip()


def at_revision(rev: str, directories: list[str]) -> dict[str, dict[str, Any]]:
    """The headline figures committed at `rev`, read through DVC (git-tracked or DVC-tracked alike)."""
    from dvc.api import DVCFileSystem  # lazy: dvc.api takes ~1.4 s; the git baseline only

    try:
        fs = DVCFileSystem(".", rev=rev)
        found = {d: sorted(p for p in fs.find(d) if p.endswith(".json")) for d in directories if fs.isdir(d)}
        return {
            f"{Path(d).name}/{Path(p).stem}": parse_figures(fs.read_text(p), f"{p} at {rev[:12]}")
            for d, paths in found.items()
            for p in paths
        }
    except ArtifactError:
        raise
    except Exception as exc:  # DVC's errors (no DVC repository at that revision, unreadable objects)
        raise ConfigError(f"cannot read the baseline at {rev[:12]} through DVC: {str(exc).splitlines()[0]}") from exc


# digits after the point in DVC's tables: DVC rounds to 5 by default, which shows a max_abs of 2.4e-07 as 0.0
PRECISION = 10


def dvc_diffs(rev: str, plots_dir: Path, groups: list[list[str]]) -> str:
    """DVC's own view for the job summary: `dvc metrics diff --md` as Markdown (a table per group of figures),
    `dvc plots diff` as HTML."""
    parts = []
    for targets in groups:
        parts += ["", f"#### `dvc metrics diff --precision {PRECISION} {rev[:12]} --targets {' '.join(targets)}`", ""]
        metrics = _dvc("metrics", "diff", "--md", "--precision", str(PRECISION), rev, "--targets", *targets)
        rows = [line for line in metrics.stdout.splitlines() if line.startswith("|")][
            2:
        ]  # below the header and its rule
        parts.append(
            (metrics.stdout.strip() if rows else "(no metric changed)")
            if metrics.returncode == 0
            else f"(failed: {_why(metrics)})"
        )
    plots_dir.mkdir(parents=True, exist_ok=True)  # dvc plots diff wants the directory to exist
    plots = _dvc("plots", "diff", rev, "-o", str(plots_dir))
    parts += [
        "",
        f"Training curves and the benchmark's latency against throughput, against {rev[:12]} "
        "(`dvc plots diff`): " + (f"`{plots_dir}/index.html`" if plots.returncode == 0 else f"failed: {_why(plots)}"),
    ]
    return "\n".join(parts) + "\n"


def _dvc(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["dvc", *args], capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(["dvc", *args], 1, "", str(exc))


def _why(proc: subprocess.CompletedProcess) -> str:
    lines = [line.strip() for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]  # DVC ends with a support line; its error comes first
    return (errors or lines or [f"exit {proc.returncode}"])[0]

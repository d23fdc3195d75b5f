"""`python -m evaluate.parity model=<name>|all`: prove that Triton serves what the framework computes.

`localize=true model=<an ONNX model>`: blame the first layer where it differs (pipelines/comparison/localize.py);
writes reports/parity_adhoc/localize/<model>.json and .png, exit 1 when a tensor is over the bound.

Exit 0 when every checked model passes, 1 on a parity failure, 2 on usage or environment errors
(unknown model, missing artifact, stale repository, server unreachable, no GPU for a TensorRT model),
3 on a bug. Reports: reports/parity/<model>.json and its headline figures reports/parity_metrics/<model>.json
(reports/parity_gpu*/ for the GPU profile); a run whose settings differ from conf/ writes reports/parity_adhoc/.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from pipelines.comparison import comparator
from pipelines.comparison.parity_report import ParityReport
from pipelines.config.selection import require_gpu_host, selected
from pipelines.config.spec import ModelSpec, served_specs
from pipelines.core.atomic import atomic_path, prune_reports, write_json
from pipelines.core.background import Background
from pipelines.core.cli import CONF_DIR, EXIT_FAILED, EXIT_OK, compose, hydra_main
from pipelines.core.errors import ArtifactError, ConfigError, ServerError, checked_number
from pipelines.model_repository import assembly
from pipelines.serving.launcher import Endpoints, serve
from pipelines.serving.served_model import server_version
from pipelines.trt import plans


def profile_paths(cfg: Any, specs: list[ModelSpec]) -> tuple[Path, Reports]:
    """Repository and reports: a TensorRT model chosen by name is served from the GPU profile's repository."""
    if cfg.model.name != "all" and any(s.format == "tensorrt" for s in specs):
        return Path(cfg.paths.model_repository_gpu), Reports(
            Path(cfg.paths.parity_reports_gpu), Path(cfg.paths.parity_metrics_gpu)
        )
    return Path(cfg.model_repository), Reports(Path(cfg.parity_reports), Path(cfg.parity_metrics))


@dataclasses.dataclass(frozen=True)
class Reports:
    """Where a run's reports go: one full report per model, and its headline figures (the DVC metrics)."""

    full: Path
    metrics: Path

    def write(self, report: ParityReport) -> None:
        write_json(self.full / f"{report.model}.json", report.to_dict())
        write_json(self.metrics / f"{report.model}.json", report.headline())


def check(cfg: Any) -> list[ParityReport]:
    """Run parity for the selected models against one server; write and return their reports."""
    catalog = served_specs(cfg.models)
    specs = selected(cfg, catalog)
    require_gpu_host(specs, cfg)
    protocols = comparator.check_protocols([str(p) for p in cfg.protocols])
    repository, reports = profile_paths(cfg, specs)
    reports = tracked_or_adhoc(cfg, specs, reports)
    kind = str(cfg.server.kind)
    served = None if kind == "remote" else repository  # a remote server's repository cannot be read here

    def provenance() -> dict[str, list[dict[str, str]]]:
        """SHA-256 of what is served; a repository copy that is not the current export, or a config.pbtxt that is
        not the one the spec generates (every field), is refused."""
        records = {s.name: assembly.provenance(s, catalog, served) for s in specs}
        for spec in specs if served is not None else []:
            assembly.check_configs(spec, catalog, served, str(cfg.get("instance_kind", "KIND_AUTO")))
        return records

    # a stale repository is refused before a server is started on it; for a remote server the server comes
    # first: an unreachable one fails in seconds, before any local artifact is read
    checked = provenance() if served is not None else {}

    def prepare() -> list[comparator.Prepared]:
        return [comparator.prepare(spec, cfg.paths.data, catalog) for spec in specs]

    early: list[Background[list[comparator.Prepared]]] = []

    def loading() -> None:  # the framework references are computed while Triton loads its models
        early.append(Background(prepare, "references"))

    results = []
    with serve(cfg.server, repository, cfg.triton_releases, cfg.balancer, started=loading) as endpoints:
        checked = checked or provenance()
        if served is None:  # a remote server: what it reports of each config, in every field the spec sets
            fetch = served_configs(endpoints)
            for spec in specs:
                assembly.check_served_configs(spec, catalog, fetch, str(cfg.get("instance_kind", "KIND_AUTO")))
        server = {"kind": kind, "description": endpoints.server, "triton_version": server_version(endpoints)}
        prepared = early[0].result() if early else prepare()  # a remote server: once it answered
        for item in prepared:
            report = comparator.evaluate(item, comparator.collect(item, endpoints, protocols, kind == "local"), server)
            report = dataclasses.replace(report, artifacts=checked[item.spec.name])
            if item.spec.format == "tensorrt":  # the proof names the engines it was made with
                engines = {cc: meta for cc, (_, meta) in plans.plans(item.spec.artifact).items()}
                report = dataclasses.replace(report, engines=engines)
            results.append(report)
    for report in results:
        reports.write(report)
    if str(cfg.model.name) == "all":  # the reports kept between runs (DVC's persist): none of a model gone since
        prune_reports([reports.full, reports.metrics], set(catalog))
    return results


def served_configs(endpoints: Endpoints) -> Callable[[str], Any]:
    """A model name -> the config a running server reports for it (gRPC), in one line when it has none."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(endpoints.grpc)

    def fetch(name: str) -> Any:
        try:
            return client.get_model_config(name).config
        except InferenceServerException as exc:
            raise ServerError(
                f"the server at {endpoints.grpc} has no config for {name!r}: "
                f"{(exc.message() or '').splitlines()[0][:200]}"
            ) from None

    return fetch


def tracked_or_adhoc(cfg: Any, specs: list[ModelSpec], reports: Reports) -> Reports:
    """Where reports go: the tracked directories only when the check is the one conf/ defines.

    A run whose model settings, protocols or data differ from conf/ (command-line overrides) proves
    something else: its reports go to `paths.parity_adhoc`, never over the recorded proof. Reports
    sent elsewhere by the user take their headline figures with them.
    """
    if not cfg.get("profile"):
        raise ConfigError("the catalog names no `profile:` (its own name, as conf/catalog/cpu.yaml does)")
    configured_cfg = compose("parity", [f"model={cfg.model.name}", f"catalog={cfg.profile}"])
    configured = {s.name: s for s in selected(configured_cfg)}
    changes = (
        [f"protocols {list(configured_cfg.protocols)} -> {list(cfg.protocols)}"]
        if list(cfg.protocols) != list(configured_cfg.protocols)
        else []
    )
    if str(cfg.paths.data) != str(configured_cfg.paths.data):
        changes.append(f"paths.data {configured_cfg.paths.data} -> {cfg.paths.data}")
    for spec in specs:
        changes += (
            differences(configured[spec.name], spec, f"{spec.name}.")
            if spec.name in configured
            else [f"{spec.name} (not in conf/)"]
        )
    tracked = profile_paths(configured_cfg, specs)[1]
    if reports.full.resolve() != tracked.full.resolve():  # the user chose where reports go: the figures go along,
        if reports.metrics.resolve() == tracked.metrics.resolve():  # never into the tracked metrics alone
            return Reports(reports.full, reports.full / "metrics")
        return reports
    if not changes:
        return reports
    adhoc = Path(cfg.paths.parity_adhoc)
    print(
        f"note: settings differ from conf/ ({'; '.join(changes)}): reports go to {adhoc}/, not to the "
        f"tracked {reports.full}/",
        flush=True,
    )
    return Reports(adhoc, adhoc / "metrics")


def differences(configured: Any, run: Any, prefix: str = "") -> list[str]:
    """'name.field: configured -> run' for every field of two specs (nested dataclasses followed) that differs."""
    if configured == run:
        return []
    if not (dataclasses.is_dataclass(configured) and type(configured) is type(run)):
        return [f"{prefix.rstrip('.')}: {configured!r} -> {run!r}"]
    return [
        change
        for f in dataclasses.fields(configured)
        for change in differences(getattr(configured, f.name), getattr(run, f.name), f"{prefix}{f.name}.")
    ]


def engines_outside(cfg: Any) -> list[str]:
    """TensorRT models that exist in conf/model/ but not in the chosen catalog (the CPU profile's note)."""
    names = []
    for path in sorted((CONF_DIR / "model").glob("*.yaml")):
        if OmegaConf.load(path).get("format") == "tensorrt" and path.stem not in cfg.models:
            names.append(path.stem)
    return names


def localize_model(cfg: Any) -> int:
    """Serve the debug copy of one ONNX model from a scratch repository and blame the first layer over the bound."""
    import tempfile

    from pipelines.artifacts import quantization
    from pipelines.comparison import localize
    from pipelines.data import parity_inputs
    from pipelines.runners.reference import onnxruntime_runner
    from pipelines.serving.served_model import ServedModel

    specs = selected(cfg, served_specs(cfg.models))
    if len(specs) != 1 or specs[0].format != "onnx":
        raise ConfigError("localize=true takes one ONNX model: model=<name> (its debug copy exposes every tensor)")
    if str(cfg.server.kind) != "local":
        raise ConfigError("localize=true serves a debug copy from a scratch repository: server=local only")
    (spec,) = specs
    samples = checked_number(cfg.localize_samples, "localize_samples", int, 1)
    bound = checked_number(cfg.localize_bound, "localize_bound", float, 0.0)
    # the FP32 export for a lossy model (the precision's cost, layer by layer), else the served file itself
    reference_file = quantization.source(spec) if spec.quantization is not None else spec.artifact
    reference_name = f"{reference_file} in onnxruntime"
    batched = spec.max_batch_size > 0
    inputs = parity_inputs.for_model(spec, samples, str(cfg.paths.data)).head(samples).arrays
    with tempfile.TemporaryDirectory(prefix="localize-") as tmp:
        work = Path(tmp)
        exposed = localize.expose(spec.artifact, work / "served.onnx", batched)
        reference_exposed = localize.expose(reference_file, work / "reference.onnx", batched)
        debug = localize.debug_spec(spec, work / "served.onnx", exposed)
        assembly.assemble([debug], work / "repository", str(cfg.get("instance_kind", "KIND_AUTO")))
        run_reference = comparator.unbatched(
            spec, onnxruntime_runner(work / "reference.onnx", spec.inputs, [e.tensor for e in reference_exposed])
        )
        samples = [{k: v[i : i + 1] for k, v in inputs.items()} for i in range(len(next(iter(inputs.values()))))]
        reference = comparator.concat([run_reference(sample) for sample in samples])
        with (
            serve(cfg.server, work / "repository", cfg.triton_releases) as endpoints,
            ServedModel(debug, endpoints) as model,
        ):  # one sample per request: every activation travels back
            infer = comparator.unbatched(debug, lambda arrays: model.infer("grpc", arrays))
            served = comparator.concat([infer(sample) for sample in samples])
    result = localize.compare(spec.name, reference_name, exposed, served, reference, bound)
    if not result.layers:
        raise ArtifactError(f"no tensor of {spec.artifact} has a namesake in {reference_file}: nothing to compare")
    out = Path(cfg.paths.parity_adhoc) / "localize"
    write_json(out / f"{spec.name}.json", result.to_dict())
    with atomic_path(out / f"{spec.name}.png", suffix=".png") as png:
        result.plot(png)
    print(result.table(), flush=True)
    print(f"reports: {out}/{spec.name}.json and .png", flush=True)
    return EXIT_FAILED if result.first is not None else EXIT_OK


def run(cfg: Any) -> int:
    if cfg.get("localize"):
        return localize_model(cfg)
    reports = check(cfg)
    for report in reports:
        print(report.table() + "\n", flush=True)
    if cfg.model.name == "all" and (outside := engines_outside(cfg)):
        print(
            f"note: the TensorRT models ({', '.join(outside)}) are not part of this (CPU) profile; "
            "on a GPU host with TensorRT 10 run `make pipeline-gpu`",
            flush=True,
        )
    failed = [r.model for r in reports if not r.passed]
    if failed:
        print(f"parity FAILED for: {', '.join(failed)}", flush=True)
        return EXIT_FAILED
    print(f"parity passed for: {', '.join(r.model for r in reports)}", flush=True)
    return EXIT_OK


main = hydra_main("parity", run, __doc__)

if __name__ == "__main__":
    main()

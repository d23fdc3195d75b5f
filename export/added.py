"""Stage `export_added@<network>`: a model added with `python -m export.add`, into the formats Triton serves.

Writes `models/added/<network>/`: the parity inputs (`inputs.npz`: the user's sample, or seeded
inputs generated from the spec), `model.onnx` and, for Keras and TensorFlow sources,
`model.savedmodel`. Each export is checked against the source on those inputs by the shared
self-check before the folder is moved into place; a source that fails on generated inputs is one
line that names the input's value range to declare. The conversions: pipelines/byom/conversion.py.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipelines.artifacts import export_failure, io_signature, writing
from pipelines.byom import conversion, sources
from pipelines.config.network import NetworkSpec, network_spec
from pipelines.core.atomic import atomic_path, write_json
from pipelines.core.cli import hydra_main
from pipelines.core.errors import ArtifactError, ConfigError, DataError
from pipelines.data import parity_inputs
from pipelines.runners import reference

log = logging.getLogger(__name__)


def run(cfg: Any) -> dict[str, Any]:
    """Export and check; with `record_failure` (the DVC stage), a model that cannot be exported is recorded as
    failed in its folder and report, and the run succeeds, so that `dvc repro` proves every other model."""
    network = network_spec(cfg.network)
    try:
        return _export(cfg, network)
    except (ArtifactError, ConfigError, DataError) as exc:  # the user's model, not our code: theirs to fix
        if not cfg.record_failure:
            raise
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.error("the export of %s failed: %s (recorded: the other models go on)", network.name, reason)
        export_failure.record(network.artifact("inputs").parent, reason)
        report = {
            "network": network.name,
            "source": Path(network.source).as_posix(),
            "kind": sources.kind_of(network.source),
            "export_failed": reason,
        }
        write_json(Path(cfg.paths.export_reports) / f"{network.name}.json", report)
        return report


def _export(cfg: Any, network: NetworkSpec) -> dict[str, Any]:
    samples = conversion.sample_inputs(network)
    source_run = reference.reference_runner(network)
    feeds = conversion.first_feeds(network, samples)
    conversion.require_runs(network, source_run, feeds)
    formats = [fmt for fmt in conversion.SERVED if fmt in network.artifacts]
    folder = network.artifact("inputs").parent
    opset, limit = int(cfg.opset), float(cfg.verify.max_abs_diff)
    checks: dict[str, Any] = {}
    with atomic_path(folder, directory=True) as tmp:
        parity_inputs.write_npz(tmp / network.artifact("inputs").name, samples)
        for fmt in formats:
            target = tmp / network.artifact(fmt).name
            log.info("writing %s", target.name)
            conversion.convert(network, fmt, target, opset, feeds)
            signature = (
                io_signature.onnx_signature(target)
                if fmt == "onnx"
                else io_signature.savedmodel_signature(target, network.signature)
            )
            exported = conversion.runner(network, fmt, target)
            for tag, arrays in {"": samples.arrays, **samples.groups}.items():  # each size of the open dimensions
                what = f"the {fmt} export" + (f" ({parity_inputs.GROUP}{tag})" if tag else "")
                check = writing.check_export(what, signature, source_run, exported, arrays, network, limit)
                for output, diff in check.max_abs_diff.items():
                    checks.setdefault(fmt, {})[output] = max(diff, checks.get(fmt, {}).get(output, 0.0))
    report = {
        "network": network.name,
        "source": Path(network.source).as_posix(),
        "kind": sources.kind_of(network.source),
        "reference": reference.describe_reference(network),
        "samples": samples.count,
        "inputs": "sample" if network.sampling and network.sampling.sample else "generated",
        "max_abs_diff": checks,  # per format and output (differing elements for integer/bool/string outputs)
        "artifacts": {fmt: network.artifact(fmt).as_posix() for fmt in ("inputs", *formats)},
    }
    write_json(Path(cfg.paths.export_reports) / f"{network.name}.json", report)
    return report


main = hydra_main("export_added", run, __doc__)

if __name__ == "__main__":
    main()

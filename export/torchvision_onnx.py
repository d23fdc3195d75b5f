"""Stage `export_classifier@<network>`: a torchvision classifier to ONNX with a dynamic batch axis.

Writes the ONNX model, the exact state dict it came from (the PyTorch reference for parity) and
the labels file, after `onnx.checker`'s full check and a comparison against PyTorch on a batch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipelines.artifacts import io_signature, reproducible, writing
from pipelines.config.network import network_spec
from pipelines.core.atomic import atomic_path, write_json
from pipelines.core.cli import hydra_main
from pipelines.core.errors import ConfigError
from pipelines.data import labels, parity_inputs
from pipelines.runners import reference, torch_models

log = logging.getLogger(__name__)


def run(cfg: Any) -> dict[str, Any]:
    network = network_spec(cfg.network)
    network.require_reference("torch", "export.torchvision_onnx")
    inputs, outputs = network.inputs, network.outputs
    name = network.name
    weights = None if cfg.weights is None else str(cfg.weights)
    log.info("building %s (%s)", network.arch, weights or f"seeded random init, seed {cfg.seed}")
    model = torch_models.build_torchvision(network, weights, int(cfg.seed))
    pre = network.require_preprocessing("the export check")
    example = parity_inputs.imagenet_like(inputs[0], int(cfg.verify.batch_size), list(pre.mean), list(pre.std))
    onnx_path, state_dict_path = network.artifact("onnx"), network.artifact("state_dict")
    if network.labels_file is None:
        raise ConfigError(f"network {name!r} declares no labels_file")
    with (
        atomic_path(onnx_path) as onnx_tmp,
        atomic_path(state_dict_path) as sd_tmp,
        atomic_path(network.labels_file) as labels_tmp,
    ):
        log.info("exporting ONNX (opset %s, dynamic batch)", cfg.opset)
        feeds = {inputs[0].name: example}
        writing.torch_onnx(model, feeds, inputs, outputs, int(cfg.opset), onnx_tmp)
        diff = writing.check_export(
            "the ONNX export",
            io_signature.onnx_signature(onnx_tmp),
            reference.torch_runner(model, network),
            reference.onnxruntime_runner(onnx_tmp, inputs, outputs),
            feeds,
            network,
            float(cfg.verify.max_abs_diff),
        ).worst
        reproducible.torch_state_dict(model.state_dict(), sd_tmp)
        names = labels.torchvision_categories(network)
        labels.write_labels(labels_tmp, names)
    report = {
        "network": name,
        "arch": network.arch,
        "weights": weights or f"random(seed={cfg.seed})",
        "opset": int(cfg.opset),
        "verify_batch_size": len(example),
        "max_abs_diff": {"onnx": diff},
        "labels": len(names),
        "artifacts": {"onnx": str(onnx_path), "state_dict": str(state_dict_path), "labels": str(network.labels_file)},
    }
    write_json(Path(cfg.paths.export_reports) / f"{name}.json", report)
    return report


main = hydra_main("export_classifier", run, __doc__)

if __name__ == "__main__":
    main()

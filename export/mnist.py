"""Stage `export_mnist`: the Keras model as a SavedModel with an explicit named signature, and as ONNX.

Triton's TensorFlow backend serves the SavedModel (images up to 25.02); newer images need the
ONNX. Tensor names come from the network spec; each export is checked against the Keras model on
real test digits and the max abs difference is recorded in `reports/export/mnist.json`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipelines.artifacts import io_signature, writing
from pipelines.config.network import network_spec
from pipelines.core.atomic import atomic_path, write_json
from pipelines.core.cli import hydra_main
from pipelines.data import digits
from pipelines.runners import keras_models, reference

log = logging.getLogger(__name__)


def run(cfg: Any) -> dict[str, Any]:
    """Export both formats next to each other, check signatures and numerics, then move them into place."""
    network = network_spec(cfg.network)
    network.require_reference("keras", "export.mnist")
    model = keras_models.load_keras(network.artifact("keras"))
    inputs, outputs = network.inputs, network.outputs
    (image,) = inputs
    samples = {image.name: digits.to_model_input(digits.load_mnist(cfg.paths.data).x_test[: int(cfg.verify.digits)])}
    targets = {"savedmodel": network.artifact("savedmodel"), "onnx": network.artifact("onnx")}
    with atomic_path(targets["savedmodel"], directory=True) as sm_tmp, atomic_path(targets["onnx"]) as onnx_tmp:
        log.info("writing SavedModel (signature %r)", network.signature)
        writing.keras_savedmodel(model, inputs, outputs, network.signature, sm_tmp)
        log.info("converting to ONNX (opset %s) with tf2onnx", cfg.opset)
        writing.savedmodel_onnx(sm_tmp, network.signature, int(cfg.opset), onnx_tmp)
        keras_run = reference.keras_runner(model, network)
        written = {
            "savedmodel": (
                io_signature.savedmodel_signature(sm_tmp, network.signature),
                reference.savedmodel_runner(sm_tmp, network.signature, inputs, outputs),
            ),
            "onnx": (io_signature.onnx_signature(onnx_tmp), reference.onnxruntime_runner(onnx_tmp, inputs, outputs)),
        }
        limit = float(cfg.verify.max_abs_diff)
        diffs = {
            fmt: writing.check_export(f"the {fmt} export", signature, keras_run, run, samples, network, limit).worst
            for fmt, (signature, run) in written.items()
        }
    report = {
        "network": network.name,
        "verify_digits": len(samples[image.name]),
        "max_abs_diff": diffs,
        "opset": int(cfg.opset),
        "signature": network.signature,
        "artifacts": {fmt: str(path) for fmt, path in targets.items()},
    }
    write_json(Path(cfg.paths.export_reports) / f"{network.name}.json", report)
    return report


main = hydra_main("export_mnist", run, __doc__)

if __name__ == "__main__":
    main()

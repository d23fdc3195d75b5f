"""Stage `export_mnist`: the Keras model as a SavedModel with an explicit named signature, and as ONNX.

Triton's TensorFlow backend serves the SavedModel (images up to 25.02); newer images need the
ONNX. Tensor names come from the network spec; each export is checked against the Keras model on
real test digits and the max abs difference is recorded in `reports/export/mnist.json`.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from pipelines import artifacts, data, keras_models
from pipelines.atomic import atomic_path, write_json
from pipelines.cli import hydra_main
from pipelines.errors import ArtifactError
from pipelines.spec import NetworkSpec, network_spec
from pipelines.tensorflow_import import tensorflow

log = logging.getLogger(__name__)


def write_savedmodel(model: Any, network: NetworkSpec, target: Path) -> None:
    """SavedModel whose signature `network.signature` maps the spec's input name to its output name."""
    tf = tensorflow()  # first, quietly: Keras imports it
    import keras

    (image,), (probabilities,) = network.inputs, network.outputs
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=network.signature,
        fn=lambda x: {probabilities.name: model(x, training=False)},
        input_signature=[tf.TensorSpec((None, *image.dims), image.numpy_dtype, name=image.name)],
    )
    archive.write_out(str(target), verbose=False)


def write_onnx(savedmodel: Path, signature: str, opset: int, target: Path) -> None:
    """tf2onnx on the SavedModel's signature (its CLI is the documented, stable interface)."""
    import onnx

    cmd = [
        sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(savedmodel),
        "--signature_def", signature, "--opset", str(opset), "--output", str(target),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise ArtifactError(f"tf2onnx failed (exit {proc.returncode}):\n{tail}")
    model = onnx.load(str(target))
    for value in [*model.graph.input, *model.graph.output]:  # tf2onnx names the batch dim unk__N
        dim = value.type.tensor_type.shape.dim[0]
        if not dim.HasField("dim_value"):
            dim.dim_param = "batch"
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(target))


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def verify(model: Any, savedmodel: Path, onnx_path: Path, network: NetworkSpec, digits: np.ndarray) -> dict[str, float]:
    """Max abs difference of each export against Keras on the same real digits."""
    import onnxruntime as ort
    tf = tensorflow()

    (image,), (probabilities,) = network.inputs, network.outputs
    expected = np.asarray(model(digits, training=False))
    served_sm = tf.saved_model.load(str(savedmodel)).signatures[network.signature]
    got_sm = served_sm(**{image.name: tf.constant(digits)})[probabilities.name].numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (got_onnx,) = session.run([probabilities.name], {image.name: digits})
    return {"savedmodel": _max_abs_diff(got_sm, expected), "onnx": _max_abs_diff(got_onnx, expected)}


def run(cfg: Any) -> dict[str, Any]:
    """Export both formats next to each other, check signatures and numerics, then move them into place."""
    network = network_spec(cfg.network)
    network.require_reference("keras", "export.mnist")
    model = keras_models.load(network.artifact("keras"))
    inputs, outputs = network.inputs, network.outputs
    digits = data.to_model_input(data.load(cfg.paths.data).x_test[: int(cfg.verify.digits)])
    targets = {"savedmodel": network.artifact("savedmodel"), "onnx": network.artifact("onnx")}
    with atomic_path(targets["savedmodel"], directory=True) as sm_tmp, atomic_path(targets["onnx"]) as onnx_tmp:
        log.info("writing SavedModel (signature %r)", network.signature)
        write_savedmodel(model, network, sm_tmp)
        log.info("converting to ONNX (opset %s) with tf2onnx", cfg.opset)
        write_onnx(sm_tmp, network.signature, int(cfg.opset), onnx_tmp)
        signatures = {
            "savedmodel": artifacts.savedmodel_signature(sm_tmp, network.signature),
            "onnx": artifacts.onnx_signature(onnx_tmp),
        }
        for fmt, signature in signatures.items():
            problems = artifacts.mismatches(inputs, outputs, 1, signature)
            if problems:
                raise ArtifactError(f"exported {fmt} does not match network {network.name!r}: {'; '.join(problems)}")
        diffs = verify(model, sm_tmp, onnx_tmp, network, digits)
        limit = float(cfg.verify.max_abs_diff)
        for fmt, diff in diffs.items():
            log.info("%s vs Keras on %d test digits: max abs diff %.3g (limit %.1g)", fmt, len(digits), diff, limit)
            if diff > limit:
                raise ArtifactError(f"{fmt} export differs from Keras by {diff:.3g} > {limit:g}; nothing was written")
    report = {
        "network": network.name,
        "verify_digits": len(digits),
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

"""Stage `quantize@<model>`: an FP16 or INT8 ONNX model built from its network's FP32 export.

FP16 with onnxconverter-common (FP32 inputs and outputs kept), INT8 with ONNX Runtime's static
quantization over the calibration set the model declares (`quantization:` in conf/model/<model>.yaml).
Writes the model's artifact and reports/export/<model>.json (sizes, calibration, time). How far the
result is from the FP32 model is parity's to judge, on the served model (`lossy:` bounds).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipelines.artifacts import io_signature, quantization
from pipelines.config.spec import model_spec
from pipelines.core.atomic import atomic_path, write_json
from pipelines.core.cli import hydra_main
from pipelines.core.errors import ConfigError

log = logging.getLogger(__name__)


def run(cfg: Any) -> dict[str, Any]:
    spec = model_spec(str(cfg.model.name), cfg.model)
    if spec.quantization is None:
        raise ConfigError(
            f"model {spec.name!r} is {spec.format} {spec.precision}: export.quantize builds the "
            "FP16/INT8 ONNX models (those with `quantization:` settings)"
        )
    with atomic_path(spec.artifact) as tmp:
        built = quantization.build_quantized(spec, tmp, str(cfg.paths.data))
        io_signature.require_match(
            f"the {spec.precision} model",
            spec.inputs,
            spec.outputs,
            spec.max_batch_size,
            io_signature.onnx_signature(tmp),
        )
    report = {
        "model": spec.name,
        "precision": spec.precision,
        "source": str(quantization.source(spec)),
        "artifact": str(spec.artifact),
        "quantization": spec.quantization.__dict__,
        **built.to_dict(),
    }
    write_json(Path(cfg.paths.export_reports) / f"{spec.name}.json", report)
    log.info(
        "wrote %s: %.1f MB (%.0f%% of the FP32 file) in %.1f s",
        spec.artifact,
        built.bytes / 1e6,
        100 * built.bytes / built.source_bytes,
        built.seconds,
    )
    return report


main = hydra_main("quantize", run, __doc__)

if __name__ == "__main__":
    main()

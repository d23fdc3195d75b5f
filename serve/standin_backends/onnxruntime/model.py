"""Stand-in for Triton's onnxruntime backend: serves `platform: "onnxruntime_onnx"` models with ONNX Runtime.

Placed in the embedded server's backend directory as `onnxruntime/model.py`, so Triton runs every
ONNX model of the repository through it, with the model's own unchanged config. It reads
`default_model_filename`, the thread-count and execution-mode parameters, and
`optimization.graph.level` as the real backend does; anything else that backend would honour
differently is refused (`standins.py`). A GPU instance runs with the CUDA execution provider, as
in Triton's backend, where the installed ONNX Runtime has it (onnxruntime-gpu); else it is refused.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # standin_base.py and standins.py sit beside us

import numpy as np
import onnxruntime as ort
from standin_base import StandIn, StandInError, first_line

_text = np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else v, otypes=[object])
_encoded = np.vectorize(lambda v: v.encode() if isinstance(v, str) else v, otypes=[object])

# ONNX Runtime's type strings as the model config names them: the table Triton's onnxruntime backend keeps
ORT_TYPES = {
    "tensor(bool)": "TYPE_BOOL",
    "tensor(uint8)": "TYPE_UINT8",
    "tensor(uint16)": "TYPE_UINT16",
    "tensor(uint32)": "TYPE_UINT32",
    "tensor(uint64)": "TYPE_UINT64",
    "tensor(int8)": "TYPE_INT8",
    "tensor(int16)": "TYPE_INT16",
    "tensor(int32)": "TYPE_INT32",
    "tensor(int64)": "TYPE_INT64",
    "tensor(float16)": "TYPE_FP16",
    "tensor(bfloat16)": "TYPE_BF16",
    "tensor(float)": "TYPE_FP32",
    "tensor(double)": "TYPE_FP64",
    "tensor(string)": "TYPE_STRING",
}
# optimization.graph.level -> ONNX Runtime level, as Triton's onnxruntime backend maps it; any other value
# (0 or unset included) enables all optimizations
GRAPH_LEVELS = {
    -1: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    1: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    2: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}


class TritonPythonModel(StandIn):
    backend = "onnxruntime"

    def load(self, path):
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.int_parameter("intra_op_thread_count", 0)
        options.inter_op_num_threads = self.int_parameter("inter_op_thread_count", 0)
        mode = self.int_parameter("execution_mode", 0)
        if mode not in (0, 1):
            raise StandInError(f"model {self.config.name!r}: execution_mode must be 0 or 1, got {mode}")
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL if mode else ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = GRAPH_LEVELS.get(
            self.config.optimization.graph.level, ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        )
        providers = ["CPUExecutionProvider"]
        if self.args["model_instance_kind"] == "GPU":  # as Triton's backend: CUDA first, the CPU for what it lacks
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": self.device_id}))
        try:
            self.session = ort.InferenceSession(path, options, providers=providers)
        except Exception as exc:  # ONNX Runtime's load errors share no base class
            raise StandInError(
                f"model {self.config.name!r}: ONNX Runtime cannot load {path}: {first_line(exc)}"
            ) from exc
        self.output_names = [name for name, _ in self.outputs]

    def gpu_problem(self):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return f"ONNX Runtime {ort.__version__} here has no CUDA execution provider (install onnxruntime-gpu)"
        return None

    def artifact_io(self):
        def tensors(items):
            return {
                t.name: (ORT_TYPES.get(t.type, t.type), [d if isinstance(d, int) else -1 for d in t.shape])
                for t in items
            }

        return {"inputs": tensors(self.session.get_inputs()), "outputs": tensors(self.session.get_outputs())}

    def run(self, feeds):
        # string tensors: ONNX Runtime's Python API takes str only (bytes become their repr, silently) and
        # returns str; Triton's onnxruntime backend passes the bytes through, as these conversions do
        feeds = {k: _text(v) if v.dtype == np.object_ else v for k, v in feeds.items()}
        outputs = self.session.run(self.output_names, feeds)
        return {k: _encoded(v) if v.dtype == np.object_ else v for k, v in zip(self.output_names, outputs)}

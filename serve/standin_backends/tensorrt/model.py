"""Stand-in for Triton's tensorrt backend: serves `platform: "tensorrt_plan"` models with the TensorRT runtime.

Placed in the embedded server's backend directory as `tensorrt/model.py` (GPU hosts with
TensorRT 10). Like Triton's TensorRT backend it picks the plan named for the instance GPU's
compute capability in `cc_model_filenames`, else `default_model_filename` (default `model.plan`).
Buffers are held by torch on the GPU Triton gave the instance.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # standin_base.py and standins.py sit beside us

import numpy as np
from standin_base import StandIn, StandInError, config_type


class TritonPythonModel(StandIn):
    backend = "tensorrt"

    def gpu_problem(self):
        import torch

        if not torch.cuda.is_available():
            return "torch here sees no CUDA device"
        return None

    def model_filename(self):
        import torch

        torch.cuda.set_device(self.device_id)
        major, minor = torch.cuda.get_device_capability()
        return self.config.cc_model_filenames.get(f"{major}.{minor}") or super().model_filename()

    def load(self, path):
        import tensorrt as trt
        import torch

        self.torch = torch
        metadata = os.path.splitext(path)[0] + ".json"  # written beside every plan by export.tensorrt
        version_compatible = False
        if os.path.exists(metadata):
            with open(metadata) as fh:
                version_compatible = bool(json.load(fh).get("version_compatible"))
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if version_compatible:
            runtime.engine_host_code_allowed = True
        with open(path, "rb") as fh:
            self.engine = runtime.deserialize_cuda_engine(fh.read())
        if self.engine is None:
            raise StandInError(f"model {self.config.name!r}: TensorRT {trt.__version__} cannot load {path}")
        self.context = self.engine.create_execution_context()
        self.trt = trt

    def artifact_io(self):
        found = {"inputs": {}, "outputs": {}}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            kind = "inputs" if self.engine.get_tensor_mode(name) == self.trt.TensorIOMode.INPUT else "outputs"
            dtype = config_type(self.trt.nptype(self.engine.get_tensor_dtype(name)))
            found[kind][name] = (dtype, list(self.engine.get_tensor_shape(name)))
        return found

    def run(self, feeds):
        torch = self.torch
        stream = torch.cuda.current_stream()
        keep = []
        for name, array in feeds.items():
            tensor = torch.from_numpy(np.ascontiguousarray(array)).cuda()
            keep.append(tensor)
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        results = {}
        for name, dtype in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            tensor = torch.empty(shape, dtype=getattr(torch, np.dtype(dtype).name), device="cuda")
            self.context.set_tensor_address(name, tensor.data_ptr())
            results[name] = tensor
        self.context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        return {name: tensor.cpu().numpy() for name, tensor in results.items()}

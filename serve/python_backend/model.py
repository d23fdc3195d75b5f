"""Triton Python-backend model that serves an ONNX or SavedModel artifact with its own framework.

Copied into `<model>/1/model.py` of the `python` repository flavour. Everything it needs (tensor
names, dtypes, runtime, artifact file, signature) comes from the generated config.pbtxt, so no
tensor name is written here. Requests that the dynamic batcher hands over together run as one
batch and are split back.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.inputs = [(t["name"], pb_utils.triton_string_to_numpy(t["data_type"])) for t in config["input"]]
        self.outputs = [(t["name"], pb_utils.triton_string_to_numpy(t["data_type"])) for t in config["output"]]
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        runtime = params["runtime"]
        if runtime == "tensorrt":
            import torch

            torch.cuda.set_device(int(args["model_instance_device_id"]))  # the GPU Triton gave this instance
            self._run = self._tensorrt(version_dir, params)
            return
        artifact = os.path.join(version_dir, params["artifact"])
        if runtime == "onnxruntime":
            import onnxruntime as ort

            session = ort.InferenceSession(artifact, providers=["CPUExecutionProvider"])
            names = [name for name, _ in self.outputs]
            self._run = lambda feeds: dict(zip(names, session.run(names, feeds)))
        elif runtime == "tensorflow":
            import tensorflow as tf

            signature = tf.saved_model.load(artifact).signatures[params["signature"]]
            self._run = lambda feeds: {
                k: v.numpy() for k, v in signature(**{n: tf.constant(a) for n, a in feeds.items()}).items()
            }
        else:
            raise pb_utils.TritonModelException(f"unknown runtime {runtime!r}")

    def _tensorrt(self, version_dir, params):
        """Run a plan with the TensorRT runtime on this GPU, buffers held by torch (GPU hosts only)."""
        import tensorrt as trt
        import torch

        if "cc_artifacts" in params:  # several GPU architectures: the plan built for this one
            major, minor = torch.cuda.get_device_capability()
            plans = json.loads(params["cc_artifacts"])
            name = plans.get(f"{major}.{minor}")
            if name is None:
                raise pb_utils.TritonModelException(f"no plan for compute capability {major}.{minor}: {plans}")
        else:
            name = params["artifact"]
        path = os.path.join(version_dir, name)
        with open(os.path.splitext(path)[0] + ".json") as fh:
            meta = json.load(fh)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if meta.get("version_compatible"):
            runtime.engine_host_code_allowed = True
        with open(path, "rb") as fh:
            engine = runtime.deserialize_cuda_engine(fh.read())
        if engine is None:
            raise pb_utils.TritonModelException(f"TensorRT {trt.__version__} cannot load {name}")
        context = engine.create_execution_context()
        torch_dtypes = {np.dtype(d): t for d, t in ((np.float32, torch.float32), (np.float16, torch.float16),
                                                    (np.int32, torch.int32), (np.int64, torch.int64))}
        outputs = self.outputs

        def run(feeds):
            stream = torch.cuda.current_stream()
            keep = []
            for name_, array in feeds.items():
                tensor = torch.from_numpy(np.ascontiguousarray(array)).cuda()
                keep.append(tensor)
                context.set_input_shape(name_, tuple(tensor.shape))
                context.set_tensor_address(name_, tensor.data_ptr())
            results = {}
            for name_, dtype in outputs:
                shape = tuple(context.get_tensor_shape(name_))
                tensor = torch.empty(shape, dtype=torch_dtypes[np.dtype(dtype)], device="cuda")
                context.set_tensor_address(name_, tensor.data_ptr())
                results[name_] = tensor
            context.execute_async_v3(stream.cuda_stream)
            stream.synchronize()
            return {k: v.cpu().numpy() for k, v in results.items()}

        return run

    def execute(self, requests):
        feeds_per_request = [
            {name: pb_utils.get_input_tensor_by_name(r, name).as_numpy().astype(dtype, copy=False)
             for name, dtype in self.inputs}
            for r in requests
        ]
        sizes = [len(next(iter(f.values()))) for f in feeds_per_request]
        batch = {name: np.concatenate([f[name] for f in feeds_per_request]) for name, _ in self.inputs}
        results = self._run(batch)
        responses, start = [], 0
        for size in sizes:
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(results[name][start : start + size], dtype=dtype))
                for name, dtype in self.outputs
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses

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
        artifact = os.path.join(args["model_repository"], args["model_version"], params["artifact"])
        runtime = params["runtime"]
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

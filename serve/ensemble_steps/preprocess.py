"""Ensemble step: encoded images (BYTES) -> normalised float32 CHW tensors, with pipelines/data/images.py.

Copied into `<ensemble>_preprocess/1/model.py`; `images.py` is copied beside it, the very file
the client-side reference uses. Settings (resize, crop, mean, std, and the image limits) come from
the config's parameters, tensor names from its input and output.
"""

import functools
import json
import os
import sys
import time

import numpy as np
import triton_python_backend_utils as pb_utils

DECODE_NICENESS = 10  # decoding yields the CPU to inference: a request of large images takes what the others leave


class TritonPythonModel:
    def initialize(self, args):
        os.nice(DECODE_NICENESS)  # this stub process only (one per instance)
        sys.path.insert(0, os.path.join(args["model_repository"], args["model_version"]))
        import images  # the shared pre-processing, copied beside this file

        self.images = images
        config = json.loads(args["model_config"])
        self.settings = json.loads(config["parameters"]["config"]["string_value"])
        (self.input,) = [t["name"] for t in config["input"]]
        (self.output,) = [t["name"] for t in config["output"]]
        # each instance keeps its share of every client's pixel budget (Triton spreads requests over them)
        limits = self.settings["limits"]
        instances = sum(int(g.get("count", 1)) for g in config.get("instance_group", [])) or 1
        self.budget = images.PixelBudget(limits["client_pixels_per_s"] / instances, limits["max_request_pixels"])

    def execute(self, requests):
        """Each request on its own: one bad image fails its own request, fast, and no other."""
        responses = []
        for request in requests:
            encoded = pb_utils.get_input_tensor_by_name(request, self.input).as_numpy().reshape(-1)
            client = str(json.loads(request.parameters() or "{}").get(self.images.CLIENT_PARAMETER, "unnamed"))
            charge = functools.partial(self.budget.charge, client, now=time.monotonic())
            try:  # every header checked, the request's and the client's pixel budgets too, before any decoding
                batch = self.images.preprocess_request(encoded, self.settings, charge).astype(np.float32)
            except self.images.ImageBudgetError as exc:  # the sender may send again later
                responses.append(
                    pb_utils.InferenceResponse(error=triton_error(f"input {self.input!r}: {exc}", "UNAVAILABLE"))
                )
                continue
            except self.images.ImageDecodeError as exc:
                responses.append(pb_utils.InferenceResponse(error=triton_error(f"input {self.input!r}: {exc}")))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output, batch)]))
        return responses


def triton_error(message, code="INVALID_ARG"):
    """The sender's fault: INVALID_ARG (HTTP 400) by default, not INTERNAL (500); UNAVAILABLE (503) to come back
    later. A Python backend without error codes says INTERNAL."""
    code = getattr(pb_utils.TritonError, code, None)
    return pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)

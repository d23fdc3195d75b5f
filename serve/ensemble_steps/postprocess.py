"""Ensemble step: raw logits -> top-k softmax probabilities and their labels.

Copied into `<ensemble>_postprocess/1/model.py` with `images.py` (softmax, top_k) and the
classifier's labels file beside it; k, file name and tensor names come from the config.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        sys.path.insert(0, version_dir)
        import images

        self.images = images
        config = json.loads(args["model_config"])
        settings = json.loads(config["parameters"]["config"]["string_value"])
        self.k = int(settings["top_k"])
        with open(os.path.join(version_dir, settings["labels"]), encoding="utf-8") as fh:
            self.labels = np.array([line.rstrip("\n").encode() for line in fh], dtype=np.object_)
        (self.input,) = [t["name"] for t in config["input"]]
        outputs = {t["data_type"]: t["name"] for t in config["output"]}
        self.labels_output = outputs.pop("TYPE_STRING")
        (self.scores_output,) = outputs.values()

    def execute(self, requests):
        responses = []
        for request in requests:
            logits = pb_utils.get_input_tensor_by_name(request, self.input).as_numpy()
            scores, indices = self.images.top_k(self.images.softmax(logits), self.k)
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor(self.scores_output, scores.astype(np.float32)),
                        pb_utils.Tensor(self.labels_output, self.labels[indices]),
                    ]
                )
            )
        return responses

"""What every stand-in backend shares: read the model's config as Triton's backends do, batch, split.

Copied beside each stand-in's `model.py` in the embedded server's backend directory, with
`standins.py` (the refusal rules). A stand-in subclass only loads its artifact, reports the
artifact's own I/O and runs one batch; the rest is here:

- the model file is `default_model_filename` (or the backend's default) in the version directory;
- the config's tensors (names, dtypes, dims, batch axis) must match the artifact's, as Triton's
  backends check at load time;
- the instance runs where Triton's backend would run it: a GPU instance (KIND_GPU, or KIND_AUTO
  resolved to a GPU) only where the stand-in's runtime has the GPU, else the load is refused;
- a config field the stand-in cannot honour refuses the load (repository assembly refuses it first);
- the requests the dynamic batcher hands over run as one batch and are split back per request.
"""

import json
import os

import numpy as np
import standins
import triton_python_backend_utils as pb_utils
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import np_to_triton_dtype


def config_type(dtype):
    """A numpy dtype (or its name) as the model config names it (TYPE_FP32, TYPE_STRING), through tritonclient's
    own table; the name itself where Triton has no such type."""
    try:
        name = np_to_triton_dtype(np.dtype(dtype))
    except TypeError:
        name = None
    if name is None:
        return str(dtype)
    return "TYPE_STRING" if name == "BYTES" else f"TYPE_{name}"


def first_line(exc):
    """An exception as one line (its type where it has no message)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class StandInError(Exception):
    """The model cannot be served as configured: a one-line reason, raised as Triton's model exception."""


class StandIn:
    """Base of a stand-in backend's `TritonPythonModel`; subclasses set `backend` and implement the hooks."""

    backend = ""

    # ------------------------------------------------------------------ hooks

    def load(self, path):
        """Load the artifact at `path` (the version directory's model file)."""
        raise NotImplementedError

    def artifact_io(self):
        """{'inputs': {name: (triton type, shape)}, 'outputs': {...}} as the artifact declares them;
        shapes include the batch axis, -1 where dynamic."""
        raise NotImplementedError

    def run(self, feeds):
        """One batch: {input name: array} -> {output name: array}."""
        raise NotImplementedError

    def gpu_problem(self):
        """Why this stand-in cannot run a GPU instance here (None: it can, on `self.device_id`)."""
        return "it has no GPU runtime"

    # ------------------------------------------------------------------ Triton's entry points

    def initialize(self, args):
        try:
            try:
                config = json_format.ParseDict(json.loads(args["model_config"]), mc.ModelConfig())
            except json_format.ParseError as exc:  # a field this stand-in's protobuf does not know: cannot honour it
                raise StandInError(f"model {args['model_name']!r}: config not understood: {first_line(exc)}") from exc
            problem = standins.refusal_message(config)
            if problem:
                raise StandInError(problem)
            self.config = config
            self.args = args
            self.device_id = int(args["model_instance_device_id"])
            self.check_instance_kind(args["model_instance_kind"])
            self.parameters = {k: v.string_value for k, v in config.parameters.items()}
            self.inputs = [
                (t.name, pb_utils.triton_string_to_numpy(mc.DataType.Name(t.data_type))) for t in config.input
            ]
            self.outputs = [
                (t.name, pb_utils.triton_string_to_numpy(mc.DataType.Name(t.data_type))) for t in config.output
            ]
            self.version_dir = os.path.join(args["model_repository"], args["model_version"])
            path = os.path.join(self.version_dir, self.model_filename())
            if not os.path.exists(path):
                raise StandInError(f"model {config.name!r}: {path} not found")
            self.load(path)
            self.check_io()
        except StandInError as exc:
            raise pb_utils.TritonModelException(str(exc)) from exc
        pb_utils.Logger.log_info(
            f"{args['model_instance_name']}: {self.backend} stand-in serving "
            f"{os.path.basename(path)} with {standins.describe_standin(self.backend)}"
        )

    def execute(self, requests):
        feeds = [
            {name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name, _ in self.inputs} for r in requests
        ]
        try:
            if self.config.max_batch_size > 0 and len(feeds) > 1:
                sizes = [len(next(iter(f.values()))) for f in feeds]
                merged = self.run({name: np.concatenate([f[name] for f in feeds]) for name, _ in self.inputs})
                results, start = [], 0
                for size in sizes:
                    results.append({k: v[start : start + size] for k, v in merged.items()})
                    start += size
            else:
                results = [self.run(f) for f in feeds]
        except Exception as exc:  # noqa: BLE001 - the runtime refused the batch: every request gets the reason, the server lives on
            error = pb_utils.TritonError(f"{self.backend} stand-in: {first_line(exc)}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        return [
            pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor(name, np.ascontiguousarray(result[name], dtype=dtype))
                    for name, dtype in self.outputs
                ]
            )
            for result in results
        ]

    # ------------------------------------------------------------------ helpers for subclasses

    def model_filename(self):
        """`default_model_filename`, else the backend's default name (model.onnx, model.savedmodel, model.plan)."""
        return self.config.default_model_filename or standins.STANDINS[self.backend]["default_model_filename"]

    def parameter(self, key, default):
        return self.parameters.get(key, default)

    def int_parameter(self, key, default):
        value = self.parameter(key, str(default))
        try:
            return int(value)
        except ValueError:
            raise StandInError(
                f"model {self.config.name!r}: parameter {key} must be an integer, got {value!r}"
            ) from None

    def check_instance_kind(self, kind):
        """KIND_AUTO is resolved by now: refuse a device the real backend would use and this stand-in cannot."""
        allowed = standins.STANDINS[self.backend]["kinds"]
        if kind == "GPU" and "KIND_GPU" in allowed:
            problem = self.gpu_problem()
            if problem:
                raise StandInError(
                    f"model {self.config.name!r}: instance {self.args['model_instance_name']} is a GPU instance, "
                    f"which Triton's {self.backend} backend runs on the GPU, but the stand-in cannot: {problem} "
                    "(assemble the repository with instance_kind=KIND_CPU to serve it on the CPU)"
                )
        elif f"KIND_{kind}" not in allowed:
            raise StandInError(f"model {self.config.name!r}: the {self.backend} stand-in cannot run a {kind} instance")

    def check_io(self):
        """The config's tensors must be the artifact's, as Triton's backends check at load time: the same
        inputs, outputs among the artifact's, equal dtypes and dims, and a dynamic batch axis when batching."""
        declared = self.artifact_io()
        batching = self.config.max_batch_size > 0
        problems = []
        extra = sorted(set(declared["inputs"]) - {t.name for t in self.config.input})
        if extra:
            problems.append(f"the model has inputs {extra} that the config does not declare")
        for kind, tensors in (("input", self.config.input), ("output", self.config.output)):
            have = declared[kind + "s"]
            for tensor in tensors:
                if tensor.name not in have:
                    problems.append(f"{kind} {tensor.name!r} is not in the model (it has {sorted(have)})")
                    continue
                dtype, shape = have[tensor.name]
                want_dtype = mc.DataType.Name(tensor.data_type)
                if dtype != want_dtype:
                    problems.append(f"{kind} {tensor.name!r} is {dtype} in the model, {want_dtype} in the config")
                if shape is None:  # the artifact leaves the shape open: the config's dims apply
                    continue
                if batching and (not shape or shape[0] != -1):
                    problems.append(
                        f"{kind} {tensor.name!r} has shape {list(shape)} in the model: max_batch_size "
                        f"{self.config.max_batch_size} needs a dynamic (-1) first dimension"
                    )
                    continue
                # the model's own shape is `reshape`'s where the config has one (a per-sample scalar: dims [1],
                # reshape []), as Triton's backends compare it
                want = list(tensor.reshape.shape if tensor.HasField("reshape") else tensor.dims)
                dims = list(shape[1:] if batching else shape)
                if len(dims) != len(want) or any(d != w and d != -1 and w != -1 for d, w in zip(dims, want)):
                    problems.append(f"{kind} {tensor.name!r} has dims {dims} in the model, {want} in the config")
        if problems:
            raise StandInError(f"model {self.config.name!r}: " + "; ".join(problems))

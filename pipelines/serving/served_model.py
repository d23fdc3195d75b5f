"""Talk to a served model over HTTP (binary tensors), HTTP (JSON tensors) and gRPC with the same inputs.

Tensor names and dtypes come from the model spec; nothing here knows a model by name.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.grpc import model_config_pb2 as mc

from pipelines.config.spec import ModelSpec
from pipelines.config.tensors import TensorSpec
from pipelines.core.errors import ModelNotServed, ServerError
from pipelines.model_repository import triton_config
from pipelines.serving.endpoints import Endpoints, load_failures

PROTOCOLS = ("http", "http_json", "grpc")  # http = binary tensors
BURST = "grpc_burst"  # concurrent single-sample gRPC requests, reported like a protocol


INT32_MAX = 2**31 - 1


def _one_line(exc: BaseException | str) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def as_text(value: bytes | str) -> str:
    """BYTES elements arrive as bytes over binary protocols and as str over JSON."""
    return value.decode() if isinstance(value, bytes) else str(value)


_as_bytes = np.vectorize(lambda v: v if isinstance(v, bytes) else str(v).encode(), otypes=[object])


def parse_classes(row: np.ndarray) -> list[tuple[float, int, str]]:
    """One sample's classification-extension strings "score:index:label" as (score, index, label)."""
    parsed = []
    for item in row:
        score, index, label = as_text(item).split(":", 2)
        parsed.append((float(score), int(index), label))
    return parsed


def _set_json_data(item: Any, array: np.ndarray) -> None:
    """A numeric tensor as JSON numbers, as `set_data_from_numpy(binary_data=False)` stores it, but from
    `tolist()`: tritonclient's per-element `.item()` loop takes 0.4 s for 8 ImageNet images. The same
    Python numbers either way; on a tritonclient that keeps its data elsewhere, its own (slow) call."""
    item.set_data_from_numpy(array, binary_data=True)  # its checks of dtype and shape
    if not all(hasattr(item, a) for a in ("_data", "_raw_data", "_parameters")):
        item.set_data_from_numpy(array, binary_data=False)
        return
    item._parameters.pop("binary_data_size", None)
    item._raw_data = None
    item._data = array.reshape(-1).tolist()


def _grpc_channel_args(url: str) -> list[tuple[str, int]]:
    """tritonclient's own defaults (which custom channel_args replace), and no proxy for loopback servers."""
    args = [("grpc.max_send_message_length", INT32_MAX), ("grpc.max_receive_message_length", INT32_MAX)]
    if url.split(":")[0] in ("127.0.0.1", "localhost", "[::1]"):
        args.append(("grpc.enable_http_proxy", 0))
    return args


def server_version(endpoints: Endpoints) -> str:
    """Triton's version, as the server reports it in its metadata."""
    client = httpclient.InferenceServerClient(endpoints.http, connection_timeout=30, network_timeout=30)
    try:
        return str(client.get_server_metadata().get("version", "unknown"))
    except Exception as exc:  # tritonclient, gevent and socket errors share no base class
        raise ServerError(f"reading Triton's metadata at {endpoints.http} failed: {_one_line(exc)}") from exc
    finally:
        client.close()


class ServedModel:
    """A model on a running Triton, reachable by every protocol parity compares."""

    def __init__(self, spec: ModelSpec, endpoints: Endpoints, timeout_s: float = 120.0):
        self.spec = spec
        self.endpoints = endpoints
        self._http_mod, self._grpc_mod = httpclient, grpcclient
        self.timeout_s = timeout_s
        self.http = httpclient.InferenceServerClient(
            endpoints.http, connection_timeout=timeout_s, network_timeout=timeout_s
        )
        self.grpc = grpcclient.InferenceServerClient(endpoints.grpc, channel_args=_grpc_channel_args(endpoints.grpc))

    def __enter__(self) -> ServedModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()
        self.grpc.close()

    @contextlib.contextmanager
    def _talking(self, what: str) -> Iterator[None]:
        """Any client-side failure (refused, timed out, rejected) becomes one ServerError line."""
        try:
            yield
        except ServerError:
            raise
        except Exception as exc:  # tritonclient, gevent, grpc and socket errors share no base class
            hint = ""
            if "is restricted, expecting header" in _one_line(exc) and not self.endpoints.operator:
                hint = " (its APIs are restricted: give its operator key, TRITON_OPERATOR_KEY or server.operator_key)"
            raise ServerError(
                f"{what} on Triton ({self.endpoints.http} / {self.endpoints.grpc}) failed: {_one_line(exc)}{hint}"
            ) from exc

    def check_ready(self) -> mc.ModelConfig:
        """One-line errors for a server that is down, a model it does not serve, a config that disagrees.

        Returns the model's config as Triton serves it.
        """
        with self._talking("the liveness check"):
            live = self.http.is_server_live()
        if not live:
            raise ServerError(f"Triton at http://{self.endpoints.http} is not live")
        with self._talking(f"the readiness check of {self.spec.name!r}"):
            ready = self.http.is_model_ready(self.spec.name)
        if not ready:
            try:  # the repository index is an operator's API: a front or a server without our key refuses it
                index = self.http.get_model_repository_index(headers=self.endpoints.operator)
            except Exception:  # noqa: BLE001 - tritonclient's errors share no base class; the line says enough
                index = None
            reason = load_failures(index or [], self.endpoints.log_file).get(self.spec.name)
            if reason is not None:  # Triton tried to load it and said why it could not
                where = self.endpoints.log_file or "the server log"
                raise ModelNotServed(f"Triton did not load {self.spec.name!r}: {reason} (log: {where})")
            loaded = "" if index is None else f" (ready: {[m.get('name') for m in index if m.get('state') == 'READY']})"
            raise ServerError(f"Triton at {self.endpoints.http} does not serve a ready {self.spec.name!r}{loaded}")
        with self._talking(f"reading the config of {self.spec.name!r}"):
            config = self.grpc.get_model_config(self.spec.name).config
        problems = triton_config.config_mismatches(config, self.spec)
        if problems:
            raise ServerError(
                f"Triton serves {self.spec.name!r} with a config that disagrees with the spec ({'; '.join(problems)}): "
                "rebuild the repository (`dvc repro repository`) and restart the server"
            )
        return config

    def served_config(self, name: str | None = None) -> mc.ModelConfig:
        """The config Triton serves for this model (or for another model `name` of the same server)."""
        name = name or self.spec.name
        with self._talking(f"reading the config of {name!r}"):
            return self.grpc.get_model_config(name).config

    def _wire(self, tensor: TensorSpec, array: np.ndarray) -> np.ndarray:
        """An input as its config declares it: a per-sample scalar goes as [batch, 1] (Triton reshapes it to [])."""
        array = np.ascontiguousarray(array, dtype=tensor.numpy_dtype)
        if not tensor.reshaped:
            return array
        return array.reshape(*array.shape[: int(self.spec.max_batch_size > 0)], *tensor.served_dims)

    def _unwired(self, tensor: TensorSpec, array: np.ndarray | None) -> np.ndarray | None:
        """An output in the model's own shape: a per-sample scalar arrives as [batch, 1]."""
        if array is None or not tensor.reshaped:
            return array
        return array.reshape(*array.shape[: int(self.spec.max_batch_size > 0)], *tensor.dims)

    def _inputs(self, module, arrays: Mapping[str, np.ndarray], binary: bool) -> list:
        inputs = []
        for tensor in self.spec.inputs:
            array = self._wire(tensor, arrays[tensor.name])
            item = module.InferInput(tensor.name, list(array.shape), tensor.dtype)
            if module is self._http_mod and not binary and tensor.dtype != "BYTES":
                _set_json_data(item, array)
            elif module is self._http_mod:
                item.set_data_from_numpy(array, binary_data=binary)
            else:
                item.set_data_from_numpy(array)
            inputs.append(item)
        return inputs

    def _send(self, protocol: str, arrays: Mapping[str, np.ndarray], outputs: Mapping[str, int], what: str) -> Any:
        """One request over `protocol` asking for `outputs` (name -> class_count; 0: the raw tensor)."""
        with self._talking(f"{protocol} {what} of {self.spec.name!r}"):
            if protocol == "grpc":
                requested = [self._grpc_mod.InferRequestedOutput(n, class_count=k) for n, k in outputs.items()]
                return self.grpc.infer(
                    self.spec.name,
                    self._inputs(self._grpc_mod, arrays, True),
                    outputs=requested,
                    client_timeout=self.timeout_s,
                )
            if protocol in ("http", "http_json"):
                binary = protocol == "http"
                requested = [
                    self._http_mod.InferRequestedOutput(n, binary_data=binary, class_count=k)
                    for n, k in outputs.items()
                ]
                return self.http.infer(self.spec.name, self._inputs(self._http_mod, arrays, binary), outputs=requested)
        raise ValueError(f"unknown protocol {protocol!r}")

    def infer(self, protocol: str, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One request; returns every output of the spec."""
        if protocol == "http_json" and not all(t.json_safe for t in self.spec.tensors):
            raise ServerError(f"model {self.spec.name!r} has FP16/BF16 tensors, which JSON cannot carry")
        return self._outputs(self._send(protocol, arrays, {t.name: 0 for t in self.spec.outputs}, "inference"))

    def _outputs(self, result: Any) -> dict[str, np.ndarray]:
        """Every output of the spec, BYTES as bytes whatever the protocol (over JSON they arrive as str)."""
        arrays = {t.name: self._unwired(t, result.as_numpy(t.name)) for t in self.spec.outputs}
        for t in self.spec.outputs:
            if t.dtype == "BYTES" and arrays[t.name] is not None:
                arrays[t.name] = _as_bytes(arrays[t.name])
        return arrays

    def metadata(self) -> dict:
        """What Triton reports of the model: versions, platform, inputs and outputs."""
        with self._talking(f"reading the metadata of {self.spec.name!r}"):
            return self.http.get_model_metadata(self.spec.name)

    def config_text(self) -> str:
        """The model's configuration as Triton loaded it, in config.pbtxt syntax."""
        return triton_config.to_text(self.served_config())

    def classify(self, protocol: str, arrays: Mapping[str, np.ndarray], output: str, k: int) -> np.ndarray:
        """Triton's classification extension: [batch, k] of b"score:index:label", best first."""
        return self._send(protocol, arrays, {output: k}, "classification").as_numpy(output).reshape(-1, k)

    def burst(self, arrays: Mapping[str, np.ndarray], timeout_s: float = 120.0) -> list[dict[str, np.ndarray]]:
        """One gRPC request per sample, all in flight at once, so the dynamic batcher can merge them."""
        count = len(next(iter(arrays.values())))
        results: list = [None] * count
        errors: list[str] = []
        done = threading.Semaphore(0)

        def callback(index: int, result: object, error: object) -> None:
            if error is not None:
                errors.append(_one_line(error))  # type: ignore[arg-type]
            results[index] = result
            done.release()

        outputs = [self._grpc_mod.InferRequestedOutput(t.name) for t in self.spec.outputs]
        with self._talking(f"a burst of {count} requests to {self.spec.name!r}"):
            for i in range(count):
                inputs = self._inputs(self._grpc_mod, {k: v[i : i + 1] for k, v in arrays.items()}, True)
                self.grpc.async_infer(
                    self.spec.name, inputs, functools.partial(callback, i), outputs=outputs, client_timeout=timeout_s
                )
        deadline = time.monotonic() + timeout_s
        for _ in range(count):
            if not done.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise ServerError(f"burst on {self.spec.name!r}: no answer within {timeout_s:g} s")
        if errors:
            raise ServerError(f"burst on {self.spec.name!r} failed: {errors[0]}")
        return [self._outputs(r) for r in results]

    def counts(self, name: str | None = None) -> tuple[int, int]:
        """(successful requests, executions) so far: fewer executions than requests means the batcher merged them.

        Behind a balancer, each replica counts its own share: the figures are their sums.
        """
        stats = self.model_stats(name)
        requests = sum(int(s["inference_stats"]["success"]["count"]) for s in stats)
        return requests, sum(int(s.get("execution_count", 0)) for s in stats)

    def statistics_refused(self, name: str) -> str | None:
        """Why Triton's statistics of model `name` cannot be read here (None when they can): a front that passes
        inference only, or restricted APIs without their key."""
        try:
            self.model_stats(name)
        except ServerError as exc:
            answer = exc.__cause__  # tritonclient's: the status the server (or the front) answered with
            status = str(getattr(answer, "status", lambda: "")() or "")
            if status in ("403", "StatusCode.PERMISSION_DENIED") or "is restricted" in _one_line(answer or exc):
                return _one_line(answer or exc)
            raise
        return None

    def model_stats(self, name: str | None = None) -> list[dict]:
        """Triton's statistics of this model (or of model `name`; one entry per version), from every replica."""
        name = name or self.spec.name
        stats: list[dict] = []
        with self._talking(f"reading the statistics of {name!r}"):
            if not self.endpoints.members:
                stats = self.http.get_inference_statistics(name, headers=self.endpoints.operator)["model_stats"]
            for member in self.endpoints.members:
                client = self._http_mod.InferenceServerClient(member, connection_timeout=30, network_timeout=30)
                try:
                    stats += client.get_inference_statistics(name, headers=self.endpoints.operator)["model_stats"]
                finally:
                    client.close()
        return stats

    @contextlib.contextmanager
    def shared_memory(self, arrays: Mapping[str, np.ndarray]) -> Iterator[Callable[[], dict[str, np.ndarray]]]:
        """A gRPC sender whose inputs and outputs travel in system shared memory (client and server on one host).

        The inputs are written once; each call is one request. Regions are unregistered and removed on the way out.
        """
        if any(t.dtype == "BYTES" for t in self.spec.tensors):
            raise ServerError(
                f"model {self.spec.name!r} has BYTES tensors, whose size varies: no fixed shared-memory region"
            )
        batch = len(next(iter(arrays.values())))
        tag = f"t2t-{os.getpid()}-{id(self):x}"
        regions: list[tuple[str, Any]] = []
        try:
            inputs, outputs = [], []
            for role, tensors in (("in", self.spec.inputs), ("out", self.spec.outputs)):
                for tensor in tensors:
                    if role == "in":
                        array = self._wire(tensor, arrays[tensor.name])
                        size = array.nbytes
                    else:
                        size = batch * int(np.prod(tensor.dims)) * tensor.numpy_dtype.itemsize
                    name = f"{tag}-{role}-{tensor.name}"
                    handle = shm.create_shared_memory_region(name, "/" + name, size)
                    regions.append((name, handle))
                    with self._talking("registering shared memory"):
                        self.grpc.register_system_shared_memory(
                            name, "/" + name, size, headers=self.endpoints.operator_grpc
                        )
                    if role == "in":
                        shm.set_shared_memory_region(handle, [array])
                        item = self._grpc_mod.InferInput(tensor.name, list(array.shape), tensor.dtype)
                        item.set_shared_memory(name, size)
                        inputs.append(item)
                    else:
                        item = self._grpc_mod.InferRequestedOutput(tensor.name)
                        item.set_shared_memory(name, size)
                        outputs.append((tensor, item, handle))

            def send() -> dict[str, np.ndarray]:
                self.grpc.infer(
                    self.spec.name, inputs, outputs=[o for _, o, _ in outputs], client_timeout=self.timeout_s
                )
                return {t.name: shm.get_contents_as_numpy(h, t.numpy_dtype, [batch, *t.dims]) for t, _, h in outputs}

            yield send
        finally:
            for name, handle in regions:
                with contextlib.suppress(Exception):
                    self.grpc.unregister_system_shared_memory(name, headers=self.endpoints.operator_grpc)
                with contextlib.suppress(Exception):
                    shm.destroy_shared_memory_region(handle)

    def settled_counts(self, name: str | None = None, timeout_s: float = 5.0) -> tuple[int, int]:
        """Counts once they stop moving (statistics land just after the responses to earlier requests)."""
        deadline = time.monotonic() + timeout_s
        last = self.counts(name)
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.counts(name)
            if now == last:
                break
            last = now
        return last

    def counts_after(
        self, before: tuple[int, int], requests: int, name: str | None = None, timeout_s: float = 5.0
    ) -> tuple[int, int]:
        """(requests, executions) since `before`, once `requests` more have been counted."""
        deadline = time.monotonic() + timeout_s
        while True:
            now = self.counts(name)
            if now[0] - before[0] >= requests or time.monotonic() > deadline:
                return now[0] - before[0], now[1] - before[1]
            time.sleep(0.05)

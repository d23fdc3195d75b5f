"""Which TensorRT and which GPU will load a plan, and whether they can: the one resolver.

A plan loads only in the TensorRT that built it (unless built version-compatible) and only on the
compute capability it was built for (unless Ampere-plus hardware-compatible). Repository assembly
asks it about the pinned Triton image; the launcher asks it about the server it starts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipelines.core.errors import ServerError
from pipelines.trt import host


@dataclass(frozen=True)
class Loader:
    """What will load a model's plans: a name for messages, its TensorRT and its GPU's compute capability.

    None means not known yet: the pinned image's GPU is known only when a server is launched.
    """

    where: str
    tensorrt: str | None = None
    compute_capability: str | None = None

    def problem(self, metas: list[Mapping[str, Any]]) -> str | None:
        """Why these plans (one model's, one per GPU architecture) cannot load here; None when one can."""
        if self.tensorrt is None and not all(m.get("version_compatible") for m in metas):
            return (
                f"which TensorRT {self.where} carries is unknown, so no plan can be shown to load there: "
                "add its NGC release to conf/triton_versions.yaml"
            )
        return servable_problem(metas, self.tensorrt, self.compute_capability, self.where)


def image_loader(image: str, releases: Mapping[str, Mapping[str, Any]]) -> Loader:
    """The Triton image that will load a repository: its TensorRT from conf/triton_versions.yaml, any GPU."""
    return Loader(f"the Triton image {image}", tensorrt_in_image(image, releases))


def server_loader(
    kind: str, image: str = "", gpus: bool = False, releases: Mapping[str, Mapping[str, Any]] | None = None
) -> Loader:
    """What loads plans in a server launched on this host; ServerError (why) where nothing can.

    The embedded server (`local`) runs plans with this host's TensorRT on its GPU; a Docker server
    runs them with the image's TensorRT on this host's GPU, given to it with `server.gpus`.
    """
    gpu = host.local_gpu()
    if kind == "local":
        reason = host.tensorrt_unavailable()
        if reason:
            raise ServerError(f"the embedded server runs it with this host's TensorRT on its GPU, but {reason}")
        assert gpu is not None  # tensorrt_unavailable checked it
        return Loader("this host", host.tensorrt_version(), gpu.compute_capability)
    if gpu is None or not gpus:
        raise ServerError("serve it with server.gpus=all on a host with an NVIDIA GPU")
    return Loader(f"the image {image}", tensorrt_in_image(image, releases or {}), gpu.compute_capability)


def release_of(image: str) -> str | None:
    """'nvcr.io/nvidia/tritonserver:24.10-py3' -> '24.10'."""
    match = re.search(r":(\d\d\.\d\d)", image)
    return match.group(1) if match else None


def tensorrt_in_image(image: str, releases: Mapping[str, Mapping[str, Any]]) -> str | None:
    release = release_of(image)
    entry = releases.get(release) if release else None
    return str(entry["tensorrt"]) if entry else None


def same_version(built: str, server: str) -> bool:
    """Equal on every component both name ('10.8' matches '10.8.0.43'; '10.4.0' does not match '10.4.1')."""
    a, b = built.split("."), server.split(".")
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def servable_problem(
    metas: list[Mapping[str, Any]], server_tensorrt: str | None, server_cc: str | None, where: str
) -> str | None:
    """Why a model's plans (one per GPU architecture) cannot serve on a server; None when they can.

    Triton picks the plan for its GPU's compute capability, so one loadable plan suffices; plans
    for other architectures are served to other GPUs. The plan that will load must match the
    server's TensorRT.
    """
    candidates = [m for m in metas if cc_problem(m, server_cc, where) is None]
    if not candidates:
        built_for = ", ".join(sorted(str(m["compute_capability"]) for m in metas))
        if len(metas) == 1:
            return cc_problem(metas[0], server_cc, where)
        return (
            f"no plan for {where}'s GPU (compute capability {server_cc}); plans exist for {built_for}: "
            "build one on that GPU"
        )
    for meta in candidates:
        problem = tensorrt_problem(meta, server_tensorrt, where)
        if problem:
            return problem
    return None


def tensorrt_problem(meta: Mapping[str, Any], server_tensorrt: str | None, where: str) -> str | None:
    built = str(meta["tensorrt_version"])
    if server_tensorrt is not None:
        if meta.get("version_compatible"):
            if built.split(".")[0] != server_tensorrt.split(".")[0] or _older(server_tensorrt, built):
                return (
                    f"plan built with TensorRT {built} (version-compatible) cannot load in {where}'s "
                    f"TensorRT {server_tensorrt}: it needs the same major version, {built} or newer"
                )
        elif not same_version(built, server_tensorrt):
            return (
                f"plan built with TensorRT {built} cannot load in {where}'s TensorRT {server_tensorrt}; "
                f"rebuild it with TensorRT {server_tensorrt} (builder=trtexec uses the matching container) "
                "or build it version-compatible"
            )
    return None


def cc_problem(meta: Mapping[str, Any], server_cc: str | None, where: str) -> str | None:
    if server_cc is not None:
        cc = str(meta["compute_capability"])
        if meta.get("hardware_compatibility") == "ampere_plus":
            if float(server_cc) < 8.0:
                return f"plan is Ampere-plus hardware-compatible, but {where}'s GPU has compute capability {server_cc}"
        elif cc != server_cc:
            return (
                f"plan built for compute capability {cc} cannot load on {where}'s GPU ({server_cc}); "
                "build one on that GPU (several archs: one plan each, served through cc_model_filenames)"
            )
    return None


def _older(a: str, b: str) -> bool:
    def key(v: str) -> list[int]:
        return [int(p) for p in v.split(".") if p.isdigit()]

    return key(a) < key(b)


def backend_args(metas: list[Mapping[str, Any]]) -> list[str]:
    """Triton must be told to load version-compatible plans."""
    if any(m.get("version_compatible") for m in metas):
        return ["--backend-config=tensorrt,version-compatible=true"]
    return []

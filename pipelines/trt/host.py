"""What this host offers for TensorRT work: an NVIDIA GPU (nvidia-smi) and the TensorRT Python package.

Each probe answers with a reason when the answer is no, so commands can say in one line why a
TensorRT step cannot run here instead of failing deep inside an import.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    name: str
    compute_capability: str
    driver: str


@functools.lru_cache(maxsize=1)
def local_gpu() -> Gpu | None:
    """The first GPU nvidia-smi reports, or None on a host without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    if out.returncode != 0 or not lines:
        return None
    name, cc, driver = (part.strip() for part in lines[0].split(",")[:3])
    return Gpu(name, cc, driver)


@functools.lru_cache(maxsize=1)
def tensorrt_version() -> str | None:
    """The importable TensorRT's version (the PyPI placeholders that cannot import count as absent)."""
    try:
        import tensorrt  # lazy: TensorRT exists only on GPU hosts
    except Exception:  # noqa: BLE001 - ImportError, or a placeholder package failing at import
        return None
    return str(getattr(tensorrt, "__version__", "")) or None


def tensorrt_unavailable() -> str | None:
    """Why TensorRT engines cannot be built or run on this host, or None if they can."""
    if local_gpu() is None:
        return "this host has no NVIDIA GPU (nvidia-smi finds none)"
    if tensorrt_version() is None:
        return "TensorRT is not installed here (pip install tensorrt-cu12==<the version of your Triton image>)"
    return None

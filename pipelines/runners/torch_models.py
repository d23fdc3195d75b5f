"""torchvision classifiers: built from the network spec, with weights from one of three sources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.config.network import NetworkSpec
from pipelines.core.errors import ArtifactError, ConfigError, first_line
from pipelines.data.parity_inputs import imagenet_like
from pipelines.frameworks.torchvision_compat import import_torchvision


def build_torchvision(network: NetworkSpec, weights: str | None = None, seed: int = 0) -> Any:
    """An eval-mode model: seeded random init (`weights=None`), a torchvision weight name, or a state-dict path."""
    import torch  # lazy: torch takes ~6 s to import; torch work only

    tv = import_torchvision()
    arch = network.arch
    if arch is None:
        raise ConfigError(f"network {network.name!r} names no torchvision `arch`")
    try:
        builder_weights = tv.models.get_model_weights(arch)
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"network {network.name!r}: unknown torchvision model {arch!r}") from exc
    if weights is None:
        torch.manual_seed(seed)
        return calibrate_batchnorm(tv.models.get_model(arch, weights=None), network)
    if Path(weights).suffix in (".pt", ".pth") or Path(weights).exists():
        model = tv.models.get_model(arch, weights=None)
        try:
            model.load_state_dict(load_state_dict(weights))
        except RuntimeError as exc:  # missing/unexpected keys, shape mismatches
            raise ArtifactError(f"{weights} does not fit {arch}: {str(exc).splitlines()[0]}") from exc
        return model.eval()
    try:
        enum = builder_weights[weights]
    except KeyError as exc:
        names = ", ".join(w.name for w in builder_weights)
        raise ConfigError(f"weights {weights!r} is neither a file nor a {arch} weight name ({names})") from exc
    try:
        return tv.models.get_model(arch, weights=enum).eval()
    except Exception as exc:  # urllib errors, hash mismatches: the download is the user's environment
        raise ArtifactError(
            f"could not download {arch} {weights} weights "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "offline, use weights=null (seeded random) or a local state-dict path"
        ) from exc


def calibrate_batchnorm(model: Any, network: NetworkSpec, images: int = 16) -> Any:
    """Give a randomly initialised net the BatchNorm statistics of image-like inputs, then eval mode.

    Fresh BatchNorm layers assume unit-variance activations; without calibration a random
    MobileNetV2 emits logits of ~1e-9 (every class tied) and parity would compare noise. With it,
    logits spread like a trained net's, so ranking and tolerance checks mean something.
    """
    import torch  # lazy: torch takes ~6 s to import; torch work only

    (tensor,) = network.inputs
    pre = network.require_preprocessing("BatchNorm calibration")
    batch = torch.from_numpy(imagenet_like(tensor, images, list(pre.mean), list(pre.std), seed=12345))
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batch
    model.train()
    with torch.no_grad():
        model(batch)
    return model.eval()


def load_state_dict(path: str | Path) -> dict:
    import torch  # lazy: torch takes ~6 s to import; torch work only

    if not Path(path).is_file():
        raise ArtifactError(f"{path} not found: run the export stage first (`dvc repro`)")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, zip errors
        raise ArtifactError(f"{path}: not a loadable state dict ({exc})") from exc


def load_torch_export(path: Path) -> Any:
    """A torch.export program saved by the user (`torch.export.save`)."""
    import torch  # lazy: torch takes ~6 s to import; torch work only

    try:
        return torch.export.load(str(path))
    except Exception as exc:  # torch's deserialization errors share no base class
        raise ArtifactError(f"{path}: torch.export.load cannot read it ({first_line(exc)})") from exc


def load_torchscript(path: Path) -> Any:
    """A TorchScript module saved by the user (`torch.jit.save`), in eval mode on CPU."""
    import torch  # lazy: torch takes ~6 s to import; torch work only

    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:  # torch.jit's errors share no base class
        raise ArtifactError(f"{path}: torch.jit.load cannot read it ({first_line(exc)})") from exc

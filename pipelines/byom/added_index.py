"""The files an added model gets (`python -m export.add`, `python -m export.remove`), written as one.

An added network is `conf/network/<name>.yaml` (its tensors, read from the model's own signature,
its source file, where its parity inputs come from) and one `conf/model/<name>_<format>.yaml` per
served format, both rendered from the spec types (`pipelines/config`), so they hold exactly the keys
the spec reads; `conf/added.yaml` lists them for the CPU catalog (its `defaults`) and for `dvc.yaml`
(`added`: one export stage each, depending on the source and the sample). Every file is written
only once everything was checked (`derivation`), and a failure puts every file back as it was.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipelines.byom import conversion
from pipelines.byom.derivation import Derived, Request, derive
from pipelines.config.network import NetworkSpec, Sampling, network_spec
from pipelines.config.spec import DynamicBatching, ModelSpec, ParitySettings, model_spec
from pipelines.config.spec_yaml import partial_yaml_data, yaml_data
from pipelines.config.tensors import TensorSpec
from pipelines.config.tolerances import Tolerance
from pipelines.core.atomic import write_text
from pipelines.core.cli import CONF_DIR, compose
from pipelines.core.errors import ConfigError
from pipelines.core.paths import project_path
from pipelines.model_repository import standins, triton_config
from pipelines.runners import reference

INDEX = CONF_DIR / "added.yaml"
INDEX_HEADER = """\
# @package _global_
# Models added with `python -m export.add` (it writes this file; `python -m export.remove` takes one out).
# The CPU catalog includes this file; dvc.yaml reads `added` through `vars`: one export_added stage each,
# depending on the model's source and on its sample (the network's own file where inputs are generated).
"""
CATALOG_ENTRY = re.compile(r"^\s*-\s*/model@models\.([\w.-]+)\s*:", re.MULTILINE)
FP16_OUTPUT_TOLERANCE = 5.0e-2  # FP16 values get the FP16 preset's atol and rtol


@dataclass(frozen=True)
class Added:
    """What was added: what the user's file implies (its tensors, served models, notes) and the files written."""

    name: str
    derived: Derived
    files: tuple[Path, ...]

    @property
    def models(self) -> tuple[str, ...]:
        return self.derived.models

    def summary(self) -> str:
        def tensor(t: TensorSpec) -> str:
            return f"    {t.name}: {t.dtype} {list(t.dims)}"

        d = self.derived
        batch = (
            f"batched (max_batch_size {d.max_batch_size}, dims below exclude the batch axis)"
            if d.max_batch_size
            else "no batch axis (max_batch_size 0)"
        )
        lines = [
            f"added {self.name}: {d.kind} model, reference {d.source.reference}, {batch}",
            "  inputs:",
            *map(tensor, d.inputs),
            "  outputs:",
            *map(tensor, d.outputs),
            *(f"  note: {n}" for n in d.notes),
            "  wrote: " + ", ".join(project_path(f) for f in self.files),
            f"  served as: {', '.join(d.models)}",
            "next: `dvc repro` exports, serves and checks it; "
            f"`python -m evaluate.parity model={d.models[0]}` checks one",
        ]
        return "\n".join(lines)


def read_index() -> tuple[list[str], dict[str, dict[str, str]]]:
    """conf/added.yaml: the served models it lists (defaults) and the networks (`added`)."""
    data = yaml.safe_load(INDEX.read_text()) if INDEX.exists() else {}
    models = [next(iter(entry.values())) for entry in data.get("defaults") or []]
    return models, dict(data.get("added") or {})


def index_text(models: list[str], networks: dict[str, dict[str, str]]) -> str:
    lines = [INDEX_HEADER.rstrip("\n"), "defaults:" if models else "defaults: []"]
    lines += [f"  - /model@models.{m}: {m}" for m in models]
    lines.append(
        yaml.safe_dump({"added": networks}, sort_keys=True, default_flow_style=False).rstrip("\n")
        if networks
        else "added: {}"
    )
    return "\n".join(lines) + "\n"


def served_names() -> set[str]:
    """Every model name the catalogs serve or conf/model/ defines (an ensemble's steps included). Read from the
    files, not composed: composing a catalog composes every model in it, seconds once many models are added."""
    names = set(CATALOG_ENTRY.findall("\n".join(p.read_text() for p in (CONF_DIR / "catalog").glob("*.yaml"))))
    for path in (CONF_DIR / "model").glob("*.yaml"):
        names.add(path.stem)
        if (yaml.safe_load(path.read_text()) or {}).get("format") == "ensemble":
            names |= {f"{path.stem}_preprocess", f"{path.stem}_postprocess"}
    return names


@contextlib.contextmanager
def transaction(paths: list[Path]) -> Iterator[None]:
    """Every file as it was before, on any failure inside (a user error, a bug, an interruption)."""
    saved = {p: p.read_bytes() if p.exists() else None for p in paths}
    try:
        yield
    except BaseException:
        for path, data in saved.items():
            if data is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(data)
        raise


def add(req: Request) -> Added:
    """Check everything, then write the spec files (all or none)."""
    network_file = CONF_DIR / "network" / f"{req.name}.yaml"
    if network_file.exists() or req.name in read_index()[1]:
        raise ConfigError(
            f"a network named {req.name!r} exists already ({project_path(network_file)}): choose another "
            f"name, or `python -m export.remove name={req.name}` first"
        )
    derived = derive(req, served_names())
    files = {network_file: _network_text(req, derived)}
    files.update(
        {CONF_DIR / "model" / f"{req.name}_{fmt}.yaml": _model_text(req, derived, fmt) for fmt in derived.formats}
    )
    models_before, networks = read_index()
    networks[req.name] = {
        "source": project_path(req.source),
        "sample": project_path(req.sample) if req.sample else f"conf/network/{req.name}.yaml",
    }
    files[INDEX] = index_text([*models_before, *derived.models], networks)
    with transaction(list(files)):
        for path, text in files.items():
            write_text(path, text)
        _validate(req.name, derived.models)
    return Added(req.name, derived, tuple(files))


def _network_text(req: Request, derived: Derived) -> str:
    """The network's file: a `NetworkSpec` as YAML, under a header saying where it came from."""
    folder = "${paths.added}/" + req.name
    artifacts = {
        "keras" if derived.source.reference == "keras" else "source": Path(project_path(req.source)),
        "inputs": Path(f"{folder}/inputs.npz"),
    }
    artifacts.update(
        {fmt: Path(f"{folder}/model.{'onnx' if fmt == 'onnx' else 'savedmodel'}") for fmt in derived.formats}
    )
    network = NetworkSpec(
        name=req.name,
        reference=derived.source.reference,
        inputs=derived.inputs,
        outputs=derived.outputs,
        artifacts=artifacts,
        signature=req.signature,
        parity_inputs="npz",
        # an images sample: its transform (images.preprocess), as the ensemble's pre-processing step runs it
        preprocessing=derived.preprocessing,
        class_output=derived.class_output,
        batch_axis=derived.max_batch_size > 0,
        sampling=Sampling(
            sample=None if req.sample is None else Path(project_path(req.sample)),
            count=req.samples,
            value_ranges=req.value_ranges,
            dim_sizes=req.dim_sizes,
        ),
    )
    header = (
        f"# Added by `python -m export.add` from {project_path(req.source)} ({derived.kind}); tensors read from "
        "its own signature.\n# Edit freely (value_ranges, class_output); "
        f"`python -m export.remove name={req.name}` takes it out.\n"
    )
    return header + yaml.safe_dump(yaml_data(network), sort_keys=False)


def _model_text(req: Request, derived: Derived, fmt: str) -> str:
    """One served format's model file: the fields of a `ModelSpec` it sets; its network and tolerance preset come
    from its defaults list."""
    max_batch = derived.max_batch_size
    model = partial_yaml_data(
        ModelSpec,
        name=f"{req.name}_{fmt}",
        format=fmt,
        precision="fp32",
        max_batch_size=max_batch,
        instance_count=1,
        parity=ParitySettings(
            batch_sizes=(1,),
            samples=req.samples if req.sample is None else None,  # None: every sample of the file
            concurrent_requests=min(8, max_batch) if max_batch else 0,
        ),
        dynamic_batching=DynamicBatching(max_queue_delay_microseconds=100) if max_batch else None,
        # per-output overrides of the model's tolerance go here too
        output_tolerance={
            t.name: partial_yaml_data(Tolerance, atol=FP16_OUTPUT_TOLERANCE, rtol=FP16_OUTPUT_TOLERANCE)
            for t in derived.outputs
            if t.dtype == "FP16"
        }
        or None,
    )
    text = (
        f"# {req.name} served as {fmt}; written by `python -m export.add` (tolerance: conf/tolerance/fp32.yaml, "
        "per output: output_tolerance).\n"
        f"defaults:\n  - /network@network: {req.name}\n  - /tolerance@tolerance: fp32\n  - _self_\n\n"
    )
    return text + yaml.safe_dump(model, sort_keys=False)


def _validate(name: str, models: tuple[str, ...]) -> None:
    """The written files compose and build valid specs and Triton configs, as every entry point will build them,
    and the source runs on its parity inputs, as its export will run it: a model that cannot get through is
    refused now, not in `dvc repro`. (Whether Triton loads the config is known only to a server: parity says.)"""
    network = network_spec(compose("export_added", [f"network={name}"]).network)
    feeds = conversion.first_feeds(network, conversion.sample_inputs(network))
    conversion.require_runs(network, reference.reference_runner(network), feeds)
    for model in models:  # composed as export.quantize composes one model: without the catalog (parity's config
        # composes every model it serves: seconds once dozens are added, for each add)
        config = triton_config.model_config(model_spec(model, compose("quantize", [f"model={model}"]).model))
        refused = standins.refusal_message(config)
        if refused:
            raise ConfigError(refused)


def remove_added(name: str) -> tuple[list[Path], list[str]]:
    """Take an added network out: its spec files and its entry in conf/added.yaml. Returns the files and the
    served models removed."""
    models, networks = read_index()
    if name not in networks:
        raise ConfigError(f"no added model {name!r}; added: {', '.join(sorted(networks)) or 'none'}")
    own = [
        m
        for m in models
        if m.startswith(f"{name}_")
        and (CONF_DIR / "model" / f"{m}.yaml").exists()
        and f"/network@network: {name}\n" in (CONF_DIR / "model" / f"{m}.yaml").read_text()
    ]
    del networks[name]
    files = [CONF_DIR / "network" / f"{name}.yaml", *(CONF_DIR / "model" / f"{m}.yaml" for m in own)]
    write_text(INDEX, index_text([m for m in models if m not in own], networks))
    for path in files:
        path.unlink(missing_ok=True)
    return files, own

"""The spec types' YAML form: a config node as plain data, the keys each type reads, and a spec written back.

The keys a file may hold are the fields of the spec type it builds (and of its settings sections), so
no key list is typed apart from the dataclasses: reading refuses every other key, and writing
(`python -m export.add`) renders the same types, so what is written is what is read.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf

from pipelines.core.errors import ConfigError

Built = TypeVar("Built")


def plain_node(node: object) -> Any:
    """A resolved plain-Python copy of an OmegaConf node (interpolations such as `${paths.x}` applied); anything
    else as it is."""
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node


def validated(what: str, build: Callable[[Any], Built], node: object) -> Built:
    """Run a builder on a plain copy; a missing key or a value of the wrong type is a one-line ConfigError."""
    try:
        return build(plain_node(node))
    except (KeyError, TypeError, ValueError) as exc:
        detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ConfigError(f"{what}: invalid config ({detail})") from exc


def field_names(spec_type: type) -> frozenset[str]:
    """The keys a section of spec type `spec_type` (a dataclass) reads: its fields."""
    return frozenset(f.name for f in dataclasses.fields(spec_type))


def _sections(spec_type: type) -> dict[str, type]:
    """The fields of `spec_type` that hold a settings section (a spec type, or None), with that type."""
    found = {}
    for name, hint in typing.get_type_hints(spec_type).items():
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        kinds = [o for o in options if dataclasses.is_dataclass(o)]
        if kinds:
            found[name] = kinds[0]
    return found


def known_keys(cfg: dict[str, Any], spec_type: type, where: str, apart: tuple[str, ...] = ()) -> None:
    """A key no spec reads is refused, with the keys that are: it would change nothing, silently.

    `cfg` is checked against the fields of `spec_type`, each settings section in it against its own type's;
    `apart` names sections whose own builder checks them (a model's network, under the network's name).
    """
    sections = {k: t for k, t in _sections(spec_type).items() if k not in apart}
    for section, value in [(None, cfg), *((k, cfg[k]) for k in sections if k in cfg)]:
        if not isinstance(value, dict):
            continue
        keys = field_names(spec_type if section is None else sections[section])
        unknown = sorted(set(value) - keys)
        if unknown:
            prefix = "" if section is None else f"{section}."
            raise ConfigError(
                f"{where}: unknown key {prefix}{unknown[0]} (misspelled? {prefix or 'its '}keys are: "
                f"{', '.join(sorted(keys))})"
            )


def yaml_data(value: Any) -> Any:
    """A spec value as YAML-ready data: a spec type as its fields in order (a field left None, not declared, is
    not written), tuples as lists, paths as text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: yaml_data(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not None
        }
    if isinstance(value, Mapping):
        return {str(k): yaml_data(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [yaml_data(v) for v in value]
    if isinstance(value, Path):
        return value.as_posix()
    return value


def partial_yaml_data(spec_type: type, **values: Any) -> dict[str, Any]:
    """Some fields of `spec_type` as YAML-ready data, the others left to what the file composes (a model file's
    network and tolerance preset, an output's tolerance over the model's); a name that is no field is a bug."""
    unknown = sorted(set(values) - field_names(spec_type))
    if unknown:
        raise TypeError(f"{spec_type.__name__} has no fields {unknown}")
    return {k: yaml_data(v) for k, v in values.items() if v is not None}

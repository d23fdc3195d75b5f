"""How a model's answers are held, and lined up with a reference's, whether or not the model has a batch axis.

A model without a batch axis (max_batch_size 0) runs one sample per request (`unbatched`); where its answers differ
in shape beyond the batch axis (NonZero's indices, TopK's with k an input) no array can hold them and they are kept
apart, request by request (`Ragged`). Every check pairs served and reference answers the same way (`request_pairs`,
`by_shape`), so that exports, parity and localize agree on what is compared with what.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from pipelines.config.spec import ModelSpec

Arrays = dict[str, np.ndarray]
Pair = tuple[np.ndarray, np.ndarray]  # (served, reference), batch first


class Ragged(list):
    """One tensor of several requests whose answers differ in shape beyond the batch axis (an unbatched model's
    data-dependent output: NonZero's indices, TopK's with k an input): each request's array, kept apart and compared
    request by request, as no array can hold them."""

    def samples(self) -> int:
        return sum(len(a) for a in self)


def samples(answer: Any) -> int:
    """The samples an answer holds."""
    return answer.samples() if isinstance(answer, Ragged) else len(answer)


def take(arrays: Mapping[str, Any], start: int, stop: int) -> Arrays:
    """Samples start..stop of every tensor (of a `Ragged` one, the requests' arrays that hold them)."""
    return {k: _ragged_take(v, start, stop) if isinstance(v, Ragged) else v[start:stop] for k, v in arrays.items()}


def _ragged_take(ragged: Ragged, start: int, stop: int) -> Ragged:
    """The requests' arrays holding samples start..stop (every case's requests are a prefix of the same samples)."""
    kept, first = Ragged(), 0
    for array in ragged:
        if start <= first and first + len(array) <= stop:
            kept.append(array)
        first += len(array)
    return kept


def concat(parts: list[Mapping[str, Any]]) -> Arrays:
    """Each tensor of several requests' arrays, joined along the batch axis; kept apart (`Ragged`) where the
    requests' answers differ in shape beyond it."""
    joined: Arrays = {}
    for key in parts[0]:
        arrays = [a for p in parts for a in (p[key] if isinstance(p[key], Ragged) else [p[key]])]
        same = len({np.shape(a)[1:] for a in arrays}) == 1
        joined[key] = np.concatenate(arrays) if same else Ragged(arrays)
    return joined


def unbatched(spec: ModelSpec, run: Callable[[Arrays], Arrays]) -> Callable[[Arrays], Arrays]:
    """`run` as batch-first requests reach it: as it is for a model with a batch axis, else `per_sample`."""
    return run if spec.max_batch_size > 0 else per_sample(spec.name, run)


def per_sample(name: str, run: Callable[[Arrays], Arrays]) -> Callable[[Arrays], Arrays]:
    """A model without a batch axis takes one sample as it is: batch-first requests of one sample lose their first
    axis on the way in and get it back on the way out."""

    def one(arrays: Arrays) -> Arrays:
        (count,) = {len(v) for v in arrays.values()}
        if count != 1:
            raise ValueError(f"{name} has no batch axis: one sample per request, got {count}")
        return {k: np.asarray(v)[None] for k, v in run({k: v[0] for k, v in arrays.items()}).items()}

    return one


def request_pairs(got: Any, ref: Any) -> list[Pair]:
    """(served, reference) request by request where either is `Ragged`, else the one pair."""
    if not isinstance(got, Ragged) and not isinstance(ref, Ragged):
        return [(np.asarray(got), np.asarray(ref))]
    lengths = [len(a) for a in (ref if isinstance(ref, Ragged) else got)]
    split = lambda x: list(x) if isinstance(x, Ragged) else np.split(x, np.cumsum(lengths)[:-1])  # noqa: E731
    return list(zip(split(got), split(ref), strict=True))  # the same requests on both sides, or a bug of ours


def by_shape(pairs: list[Pair]) -> list[Pair]:
    """The pairs concatenated where their samples have the same shape: an output whose dimensions follow an open
    input dimension, or the data, has one shape per size sent."""
    groups: dict[tuple, list[Pair]] = {}
    for got, ref in pairs:
        groups.setdefault((got.shape[1:], ref.shape[1:]), []).append((got, ref))
    return [(np.concatenate([g for g, _ in group]), np.concatenate([r for _, r in group])) for group in groups.values()]


def identical(a: Any, b: Any) -> bool:
    """Two answers alike in every element (and, `Ragged`, request by request)."""
    if isinstance(a, Ragged) or isinstance(b, Ragged):
        return isinstance(a, Ragged) and isinstance(b, Ragged) and len(a) == len(b) and all(map(identical, a, b))
    return bool(np.array_equal(a, b))

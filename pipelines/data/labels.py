"""Class names, in one place: the labels file (written by the export, copied into the repository as
`labels.txt`, answered with by Triton's classification extension), and the audit parity runs before
trusting it.

If the export wrote the names in the wrong order, the file, the repository and Triton all agree and every
served label is wrong. torchvision ships each weight enum's category names (`weights.meta["categories"]`,
offline): the export writes them, and parity compares the file it wrote with them, name by name.
(The ensemble's post-processing step reads its copy inside Triton: serve/ensemble_steps/postprocess.py.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines.config.network import NetworkSpec
from pipelines.core.atomic import write_text
from pipelines.core.errors import ArtifactError, ConfigError
from pipelines.frameworks.torchvision_compat import import_torchvision

FILENAME = "labels.txt"  # beside a labelled model's config.pbtxt (its output's label_filename)


def read_labels(network: NetworkSpec) -> list[str]:
    """The labels file (written by the export stage): one name per class of the labelled output."""
    labelled = [t for t in network.outputs if t.labels]
    if not labelled or network.labels_file is None:
        raise ConfigError(f"network {network.name!r} declares no labelled output with a labels file")
    if not network.labels_file.is_file():
        raise ArtifactError(f"{network.labels_file} not found: run the export stage (`dvc repro`)")
    names = network.labels_file.read_text(encoding="utf-8").splitlines()
    if len(names) != labelled[0].dims[-1]:
        raise ArtifactError(f"{network.labels_file} has {len(names)} labels for {labelled[0].dims[-1]} classes")
    return names


def write_labels(path: Path, names: list[str]) -> None:
    """One name per line, in class order (atomically)."""
    write_text(path, "\n".join(names) + "\n")


def torchvision_categories(network: NetworkSpec) -> list[str] | None:
    """The class names torchvision's metadata gives a network (`labels_from`), or None when it names none."""
    if not (network.arch and network.labels_from):
        return None

    enum = import_torchvision().models.get_model_weights(str(network.arch))
    return list(enum[str(network.labels_from)].meta["categories"])


@dataclass(frozen=True)
class LabelAudit:
    """The labels file against the independent names: what parity expects Triton to answer with."""

    source: str  # where the expected names come from
    expected: list[str] | None  # None: no independent source (a network of a user's own: its file is the truth)
    problem: str = ""  # one line; empty when the file holds exactly the expected names in order


def audit_labels(network: NetworkSpec) -> LabelAudit:
    """Compare the network's labels file with torchvision's category names, name by name."""
    expected = torchvision_categories(network)
    where = str(network.labels_file)
    if expected is None:
        return LabelAudit("the labels file", None)
    source = f"torchvision's {network.arch} {network.labels_from} categories"
    if network.labels_file is None or not network.labels_file.is_file():
        raise ArtifactError(f"{where} not found: run the export stage (`dvc repro`)")
    written = network.labels_file.read_text(encoding="utf-8").splitlines()
    if len(written) != len(expected):
        return LabelAudit(source, expected, f"{where} has {len(written)} names, {source} {len(expected)}")
    wrong = [i for i, (a, b) in enumerate(zip(written, expected)) if a != b]
    if wrong:
        first = wrong[0]
        return LabelAudit(
            source,
            expected,
            f"{where} differs from {source} in {len(wrong)} of {len(expected)} "
            f"classes (class {first} is {written[first]!r}, should be "
            f"{expected[first]!r})",
        )
    return LabelAudit(source, expected)

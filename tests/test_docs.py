"""The README and docs/ stay true: every link resolves and every command they show is one the project takes.

A command is checked the way its own tool would read it, without running it: a `python -m` entry point's
Hydra overrides are composed against its config (a renamed key or group fails here before a reader meets
it), `make` targets must exist in the Makefile, and `dvc` commands go through DVC's own argument parser.
What acts on the reader's cloud, cluster or git history is named in EXTERNAL and not checked.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, ROOT, compose_config, entry_config

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXTERNAL = {"source", "git", "aws", "kubectl"}  # the reader's shell, history, bucket and cluster
SHELL_BLOCK = re.compile(r"```(?:bash|sh|shell)\n(.*?)```", re.S)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def commands(document: Path) -> list[list[str]]:
    """The simple commands of a document's shell blocks: comments dropped, `&&` and `&` split."""
    found = []
    for block in SHELL_BLOCK.findall(document.read_text()):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            current: list[str] = []
            for word in [*words, "&&"]:
                if word in ("&&", "&", "|", ";"):
                    if current:
                        found.append(current)
                    current = []
                else:
                    current.append(word)
    return found


ALL = [(doc, cmd) for doc in DOCUMENTS for cmd in commands(doc)]


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(document: Path) -> set[str]:
    return {slug(m) for m in re.findall(r"^#+ (.+)$", document.read_text(), re.M)}


def hydra_config(module: str) -> str | None:
    """The primary config an entry point composes (None: not a Hydra entry point)."""
    path = ROOT / (module.replace(".", "/") + ".py")
    assert path.is_file(), f"no module {module} in the project"
    return entry_config(path)


def make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: d.name)
def test_every_link_resolves(document: Path) -> None:
    for target in LINK.findall(document.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        file = (document.parent / path).resolve() if path else document
        assert file.exists(), f"{document.name}: link to {target} (no such file)"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{document.name}: link to {target} (no such heading)"


def check_command(command: list[str]) -> None:
    """Raise if the project would not take `command` (its own tool's error, or an AssertionError saying why)."""
    tool, *args = command
    if tool in EXTERNAL:
        return
    if tool == "python":
        assert args[:1] == ["-m"], f"{command}: run entry points as `python -m <module>`"
        module, *overrides = args[1:]
        config = hydra_config(module)
        assert config is not None, f"{module} is not an entry point"
        compose_config(config, [o for o in overrides if not o.startswith("-")])
    elif tool == "make":
        assert set(args) <= make_targets(), f"make {args}: no such target"
    elif tool == "pre-commit":  # the hooks it would install: .pre-commit-config.yaml, as pre-commit reads it
        assert args[:1] in (["install"], ["run"]), f"{command}: not a pre-commit command this project uses"
        check = subprocess.run(
            [str(BIN / "pre-commit"), "validate-config"], cwd=ROOT, capture_output=True, text=True, check=False
        )
        assert check.returncode == 0, check.stdout + check.stderr
    elif tool == "dvc":
        from dvc.cli import parse_args

        logging.disable(logging.CRITICAL)  # DVC logs the refusal through handlers an earlier in-process DVC call set up
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                parse_args(args)
        finally:
            logging.disable(logging.NOTSET)
    else:
        raise AssertionError(f"{command}: a command this check does not know (add it to EXTERNAL?)")


@pytest.mark.parametrize(("document", "command"), ALL, ids=[f"{d.name}:{' '.join(c)[:60]}" for d, c in ALL])
def test_every_command_is_one_the_project_takes(document: Path, command: list[str]) -> None:
    del document  # in the test's id
    check_command(command)


def test_the_check_catches_a_stale_command(tmp_path: Path) -> None:
    """The checker itself refuses a renamed key, a missing target, a misspelled DVC command, a missing module and
    an unknown tool, as a reader would meet them."""
    from dvc.cli import DvcParserError
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        check_command(["python", "-m", "evaluate.parity", "load.concurrency=2"])
    with pytest.raises(AssertionError, match="no such target"):
        check_command(["make", "pipline"])
    with pytest.raises(DvcParserError):
        check_command(["dvc", "metrics", "shw"])
    with pytest.raises(AssertionError, match=r"no module evaluate\.parityy"):
        check_command(["python", "-m", "evaluate.parityy"])
    with pytest.raises(AssertionError, match="does not know"):
        check_command(["curl", "localhost:8000"])
    doc = tmp_path / "doc.md"
    doc.write_text("```bash\nmake test && dvc repro  # both\npython -m evaluate.gate baseline=HEAD~3 &\n```\n")
    assert commands(doc) == [["make", "test"], ["dvc", "repro"], ["python", "-m", "evaluate.gate", "baseline=HEAD~3"]]
    assert slug("TensorRT engines (GPU hosts)") == "tensorrt-engines-gpu-hosts"


def committed_reports():
    from pipelines.documentation.figures import CommittedReports

    paths = compose_config("doc_figures").paths
    return CommittedReports(
        ROOT / paths.hardening_report,
        ROOT / paths.benchmark_reports,
        ROOT / paths.parity_reports,
        ROOT / paths.compatibility_report,
    )


FIGURED = [d for d in DOCUMENTS if "<!-- figures:" in d.read_text()]


def head_reports(tmp_path: Path):
    """The reports as the checkout's HEAD commits them (None outside a git checkout), whatever a local run rewrote."""
    import dataclasses
    import subprocess

    from pipelines.documentation.figures import CommittedReports

    archive = subprocess.run(["git", "archive", "HEAD", "reports"], cwd=ROOT, capture_output=True, check=False)
    if archive.returncode != 0:
        return None
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive.stdout, check=True)
    here = committed_reports()
    return CommittedReports(*(tmp_path / Path(p).relative_to(ROOT) for p in dataclasses.astuple(here)))


@pytest.mark.parametrize("document", FIGURED, ids=[d.name for d in FIGURED])
def test_figures_are_the_committed_reports(document: Path, tmp_path: Path) -> None:
    """Each marked table is what the reports give (`make docs` renders them after a run changed them): the working
    tree's, or HEAD's where a local `make pipeline` rewrote this host's benchmark figures since (README's two
    commands on a fresh clone)."""
    from pipelines.documentation.figures import render

    text = document.read_text()
    if render(text, committed_reports(), document.name) == text:
        return
    head = head_reports(tmp_path)
    assert head is not None and render(text, head, document.name) == text, (
        f"{document.name}: stale figures, run `make docs`"
    )


def test_a_hand_edited_figure_is_caught() -> None:
    """The rendering reads the reports: a figure typed over in a document, or a report that changed, is a difference
    (checked against the report's own JSON, read here)."""
    import json

    from pipelines.documentation.figures import render

    reports = committed_reports()
    case = json.loads(reports.hardening.read_text())["cases"][0]
    text = (ROOT / "docs" / "hardening.md").read_text()
    row = f"| {case['what']} |"
    assert row in text and f"{case['good_requests']} ({case['good_model']})" in text
    edited = text.replace(f"{case['good_p50_ms']} ms", "0.1 ms", 1)
    assert edited != text and render(edited, reports) == text
    with pytest.raises(Exception, match="no figures named 'nonesuch'"):
        render("<!-- figures:nonesuch -->\n<!-- /figures -->", reports)


def test_a_report_of_another_version_is_one_line_not_a_crash(tmp_path: Path) -> None:
    """A committed report that lacks a key the rendering reads (an older schema, a hand edit) is the user's
    ArtifactError naming the file, not a KeyError (exit 3)."""
    import json
    import shutil

    from pipelines.core.errors import ArtifactError
    from pipelines.documentation.figures import CommittedReports, render

    reports = committed_reports()
    parity = tmp_path / "parity"
    shutil.copytree(reports.parity, parity)
    old = json.loads((parity / "mnist_onnx_fp16.json").read_text())
    del old["served_by"]
    (parity / "mnist_onnx_fp16.json").write_text(json.dumps(old))
    text = (ROOT / "docs" / "precisions.md").read_text()
    with pytest.raises(ArtifactError, match=r"mnist_onnx_fp16\.json: not a report this version reads .*served_by"):
        render(text, CommittedReports(reports.hardening, reports.benchmark, parity))
    hardening = tmp_path / "hardening.json"
    hardening.write_text(json.dumps({"restart": {}}))
    with pytest.raises(ArtifactError, match=r"hardening\.json: not a report this version reads .*cases"):
        render(
            (ROOT / "docs" / "hardening.md").read_text(), CommittedReports(hardening, reports.benchmark, reports.parity)
        )

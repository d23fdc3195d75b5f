"""Entry-point plumbing shared by every `python -m <stage>` command.

Each stage module defines a pure `run(cfg)` (what tests call) and a thin `main` made here:
Hydra composes the config, user errors become one line on stderr with exit code 2.
"""

from __future__ import annotations

import contextlib
import logging
import logging.config
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from pipelines.core import lifeline
from pipelines.core.errors import PipelineError
from pipelines.core.paths import PROJECT_ROOT, project_path
from pipelines.core.stderr_filter import settle

CONF_DIR = PROJECT_ROOT / "conf"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info/warning chatter buries our progress lines

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUG = 0, 1, 2, 3
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(BaseException):
    """SIGTERM (or an ancestor that ended): unwind like an interruption, so every `with` cleans up."""


def _terminate_on_sigterm() -> None:
    """SIGTERM raises Terminated in the main thread; an ancestor's end (pipelines.core.lifeline) sends SIGTERM.

    Once unwinding starts (the first SIGTERM or Ctrl-C), the watch stops and further SIGTERMs are
    ignored: the clean-up itself (stopping Triton, restoring a repository) must not be interrupted.
    """
    reason = ["terminated (SIGTERM)"]
    stop: list[Any] = [None]

    def unwinding() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if stop[0] is not None:
            stop[0].set()

    def on_sigterm(signum: int, frame: Any) -> None:
        unwinding()
        raise Terminated(reason[0])

    def on_sigint(signum: int, frame: Any) -> None:
        unwinding()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C still interrupts
        raise KeyboardInterrupt

    def ancestor_ended(pid: int) -> None:
        reason[0] = f"an ancestor process (pid {pid}) ended"
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, on_sigint)
    stop[0] = lifeline.watch(ancestor_ended)


def group_options(group: str) -> list[str]:
    """Option names of a config group directory under conf/ (empty if there is no such group)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def required_groups(config_name: str) -> list[str]:
    """Groups the primary config's defaults list leaves to the user (`- group: ???`)."""
    defaults = OmegaConf.to_container(OmegaConf.load(CONF_DIR / f"{config_name}.yaml")).get("defaults", [])
    return [k for entry in defaults if isinstance(entry, dict) for k, v in entry.items() if v == "???"]


def check_group_overrides(argv: list[str], config_name: str) -> None:
    """Catch `group=unknown` and a missing required group before Hydra, whose own messages are multi-line."""
    given = {arg.lstrip("+~").split("=", 1)[0] for arg in argv if "=" in arg}
    for group in required_groups(config_name):
        if group not in given:
            raise PipelineError(f"choose a {group}: {group}=<{'|'.join(group_options(group))}>")
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.lstrip("+~").split("=", 1)
        options = group_options(key)
        if "/" not in key and "." not in key and "@" not in key and options and value not in options:
            raise PipelineError(f"unknown {key} {value!r}; choose one of: {', '.join(options)}")


def check_read(overrides: list[str], config_name: str) -> None:
    """Overrides that would change nothing are refused, not silently accepted:
    - `models.<name>.<key>=...` with `model=<name>`: a run on one model reads `model.*`, the catalog only with
      model=all (before, `models.mnist_onnx.tolerance.atol=1` ran with 1e-4 and wrote the tracked report);
    - `+key=...` / `++key=...` adding a key the config does not have (plain `key=...` is refused for it), but
      under `model.`, whose spec refuses any key it does not read."""
    chosen = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+").split("=", 1)[0] == "model"), None)
    if chosen not in (None, "all") and "model" in required_groups(config_name):
        catalog = [o for o in overrides if o.lstrip("+~").startswith("models.")]
        if catalog:
            key = catalog[0].lstrip("+~").split("=", 1)[0]
            raise PipelineError(
                f"{key} does nothing with model={chosen}, which reads model.* (models.* is the "
                f"catalog, read with model=all): override {key.replace(f'models.{chosen}.', 'model.')}"
                " instead"
                if key.startswith(f"models.{chosen}.")
                else f"{key} does nothing with model={chosen}: the catalog (models.*) is read with model=all"
            )
    added = [o for o in overrides if o.startswith("+") and "=" in o]
    if added:
        base = compose(config_name, [o for o in overrides if o not in added])
        for override in added:
            key = override.lstrip("+").split("=", 1)[0]
            if "/" in key or "@" in key or key.startswith("model."):
                continue
            if OmegaConf.select(base, key, default=_ABSENT) is _ABSENT:
                raise PipelineError(
                    f"{override.split('=', 1)[0]} adds a key that nothing reads ({key!r} is not in "
                    "the config): misspelled? `--help` shows the config"
                )


_ABSENT = object()


def overrides_of(argv: list[str]) -> list[str]:
    """The overrides among the arguments: `key=value`, `+key=value`, `~key`; not Hydra's flags nor their values
    (`--cfg job`)."""
    return [a for a in argv if not a.startswith("-") and ("=" in a or a.startswith("~"))]


def usage_error(exc: Exception) -> PipelineError:
    """What Hydra could not compose, as one line (Hydra's own report is six): a misspelled key or a malformed
    override is the user's."""
    text = str(exc).strip()
    cause = str(exc.__cause__ or "")
    if text.startswith("Could not override") and "is not in struct" in cause:
        key = text.split("'")[1]
        return PipelineError(f"unknown key {key!r}: misspelled? `--help` shows the config")
    return PipelineError(text.splitlines()[0] if text else type(exc).__name__)


@contextlib.contextmanager
def composition_errors() -> Iterator[None]:
    """Hydra's composition errors, raised as the user's one-line PipelineError."""
    try:
        yield
    except (HydraException, OmegaConfBaseException) as exc:
        raise usage_error(exc) from None


def help_text(config_name: str, doc: str | None, module: str) -> str:
    """Usage, the primary config with its comments, and the options of each config group it selects."""
    path = CONF_DIR / f"{config_name}.yaml"
    lines = [(doc or "").strip(), "", f"usage: python -m {module} [group=option ...] [key=value ...]", ""]
    groups = []
    defaults = OmegaConf.to_container(OmegaConf.load(path)).get("defaults", [])
    for entry in defaults:
        if isinstance(entry, str) or any(str(k).startswith("override") for k in entry):
            continue
        ((group, choice),) = entry.items()
        default = "required" if choice == "???" else f"default: {choice}"
        groups.append(f"  {group:<10} {', '.join(group_options(group))}   ({default})")
    if groups:
        lines += ["config groups:", *groups, ""]
    body = [line for line in path.read_text().splitlines() if "override hydra/" not in line]
    lines += [
        f"config ({project_path(path)}; paths in conf/common.yaml):",
        *("  " + line for line in body),
        "",
    ]
    lines.append("Print the composed config with --cfg job.")
    return "\n".join(lines)


_COMPOSING = threading.Lock()  # Hydra's config search path is one global: two threads composing at once collide


def compose(config_name: str, overrides: list[str], with_hydra: bool = False) -> Any:
    """`conf/<config_name>.yaml` with only these overrides: what conf/ says, whatever this run was given
    (`with_hydra`: with Hydra's own settings under `hydra`, which hydra_main reads and removes)."""
    with _COMPOSING:
        if GlobalHydra.instance().is_initialized():  # inside a Hydra app: its config dir is ours
            return hydra_compose(config_name=config_name, overrides=overrides, return_hydra_config=with_hydra)
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=overrides, return_hydra_config=with_hydra)


def hydra_main(config_name: str, run: Callable[[Any], Any], doc: str | None = None) -> Callable[[], None]:
    """Build the `main()` of a stage: compose `conf/<config_name>.yaml`, call `run(cfg)`, map errors to exit codes.

    `run` may return an int exit code; any other return value (what tests inspect) means success.

    The config is composed once, with Hydra's Compose API: `@hydra.main` composes every config twice (once to
    learn the run mode), and a catalog of 77 models takes Hydra 7 s per composition (its merges grow with the
    config). The run gets what `@hydra.main` would give it: the job's config, logging as `hydra/job_logging`
    says, the project root as its working directory.
    """

    def main() -> None:
        argv = sys.argv[1:]
        if "--help" in argv or "-h" in argv:
            module = getattr(sys.modules.get("__main__"), "__spec__", None)
            print(help_text(config_name, doc, module.name if module else config_name))
            sys.exit(EXIT_OK)
        try:
            show = _shown_config(argv)
            check_group_overrides(argv, config_name)
            overrides = overrides_of(argv)
            with composition_errors():
                check_read(overrides, config_name)
                cfg = compose(config_name, overrides, with_hydra=True)
        except PipelineError as exc:
            _fail(exc)
        logging.config.dictConfig(OmegaConf.to_container(cfg.hydra.job_logging, resolve=True))
        with open_dict(cfg):
            del cfg["hydra"]
        if show:
            print(OmegaConf.to_yaml(cfg), end="")
            sys.exit(EXIT_OK)
        _COMMAND[:] = [config_name, overrides]
        _exit_now(_run_stage(run, cfg))

    return main


_COMMAND: list[Any] = []  # [config name, overrides] of the command this process runs (hydra_main), once composed


def run_overrides(config_name: str) -> list[str] | None:
    """The command line's overrides where this process is a `hydra_main` command composed from `config_name`;
    None where `run(cfg)` is called on a config composed otherwise (the tests)."""
    return list(_COMMAND[1]) if _COMMAND and _COMMAND[0] == config_name else None


def _shown_config(argv: list[str]) -> bool:
    """`--cfg job` (print the composed config, run nothing); any other flag is refused in one line."""
    flags = [a for a in argv if a.startswith("-")]
    if not flags:
        return False
    if flags == ["--cfg"] and argv[argv.index("--cfg") + 1 :][:1] == ["job"]:
        return True
    raise PipelineError(f"unknown option {flags[0]}: the options are --help and --cfg job; settings are key=value")


def _run_stage(run: Callable[[Any], Any], cfg: DictConfig) -> int:
    """`run(cfg)`, and the exit code its outcome means."""
    _terminate_on_sigterm()
    try:
        code = run(cfg)
    except Terminated as exc:
        print(f"error: {exc}: stopped", file=sys.stderr)
        return EXIT_TERMINATED
    except PipelineError as exc:
        return _reported(exc)
    except MissingMandatoryValue as exc:
        key = getattr(exc, "full_key", "") or "a required value"
        return _reported(PipelineError(f"{key} is required: set it on the command line, e.g. {key}=..."))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError as exc:  # asked for more than this machine holds (numpy says how much): the user's to fix
        detail = str(exc).splitlines()[0] if str(exc) else "no detail"
        return _reported(PipelineError(f"out of memory ({detail}): ask for less (fewer samples, smaller batches)"))
    except SystemExit as exc:  # sys.exit() inside the run: its code, or its message and exit 1
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or EXIT_OK
        print(exc.code, file=sys.stderr)
        return EXIT_FAILED
    except Exception:  # noqa: BLE001 - a bug, not the user's doing: keep the traceback, but never exit 1 ("parity failed")
        traceback.print_exc()
        print("error: internal error (a bug in train-to-triton; the traceback above says where)", file=sys.stderr)
        return EXIT_BUG
    return code if isinstance(code, int) else EXIT_OK


def _exit_now(code: Any) -> None:
    """Exit once the run has finished and cleaned up, without the interpreter's teardown.

    Every output is written (atomically) and every `with` has exited by now; what is left is TensorFlow's
    and PyTorch's own teardown, 1-2 s per stage for nothing. Streams and log handlers are flushed first.
    """
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = EXIT_FAILED
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    settle()  # a TensorFlow import still running in a thread filters stderr: what it holds is passed on first
    os._exit(code or EXIT_OK)


def _reported(exc: BaseException) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return EXIT_USAGE


def _fail(exc: BaseException) -> None:
    sys.exit(_reported(exc))

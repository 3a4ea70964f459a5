"""The ``ssm-apps`` command: a small dispatcher that imports only what the chosen command needs.

    ssm-apps                                    overview: commands and shipped configs (fast: no torch import)
    ssm-apps fit|validate|test|predict ...      LightningCLI (``ssm_apps.lightning_cli.SSMAppsCLI``)
    ssm-apps demo [DOMAIN] [--quick] [...]      fit, test and predict a shipped demo config
    ssm-apps <command> ...                      a command registered by a domain (see below)
    ssm-apps ... --traceback                    show the full traceback of an error

Command table. Commands other than the training ones and ``demo`` come from the entry points of the
group ``ssm_apps.commands`` of the installed distributions, so this file names no domain. A domain
registers one in ``pyproject.toml``::

    [project.entry-points."ssm_apps.commands"]
    codec = "ssm_apps.codecs.cli:main"

The object named must be ``main(argv: list[str] | None) -> int``: it receives the arguments after
the command name, parses them itself (``--help`` included), and returns the exit status. The first
line of its module's docstring is the command's summary in ``ssm-apps --help``; the module is imported
only when its command runs. Errors it raises are printed as one line (``--traceback`` for the trace).

Configs. The configs under ``configs/`` ship with the package (``ssm_apps/configs``), so
``--config timeseries/smamba_etth1.yaml`` also works outside the repository: a ``--config`` path that
does not exist is looked up there. ``configs/demos.yaml`` lists the demos (configs and quick overrides).
"""
from __future__ import annotations

import ast
import sys
from collections.abc import Callable
from importlib import metadata, resources
from importlib.util import find_spec
from pathlib import Path

__all__ = ["COMMANDS_GROUP", "TRAINING_COMMANDS", "command_table", "configs_root", "main"]

COMMANDS_GROUP = "ssm_apps.commands"
TRAINING_COMMANDS = {
    "fit": "train a model (resume with --ckpt_path <run>/checkpoints/last.ckpt)",
    "validate": "evaluate a checkpoint on the validation data",
    "test": "evaluate a checkpoint on the test data",
    "predict": "write predictions of a checkpoint (the folder is printed)",
}
BUILTIN = {"demo": "ssm_apps.demo:main"}


def __getattr__(name: str):  # ``from ssm_apps.cli import SSMAppsCLI`` without importing Lightning up front
    if name == "SSMAppsCLI":
        from .lightning_cli import SSMAppsCLI

        return SSMAppsCLI
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def configs_root() -> Path:
    """The folder of the shipped configs (``ssm_apps/configs``: package data, a link to the repository's
    ``configs/`` in a checkout)."""
    return Path(str(resources.files("ssm_apps").joinpath("configs")))


def shipped_configs() -> list[tuple[str, str]]:
    """``(path relative to configs_root(), first comment line)`` of every shipped config (``_*`` bases left out)."""
    root = configs_root()
    out = []
    for path in sorted(root.rglob("*.yaml")) if root.is_dir() else []:
        rel = path.relative_to(root)
        if any(part.startswith("_") for part in rel.parts) or rel.name == "demos.yaml":
            continue
        first = next((line.lstrip("# ").strip() for line in path.read_text().splitlines() if line.startswith("#")), "")
        out.append((rel.as_posix(), first))
    return out


def command_table() -> dict[str, str]:
    """Every command other than the training ones: ``{name: "module:function"}`` (built-ins, then entry points)."""
    table = dict(BUILTIN)
    for ep in metadata.entry_points(group=COMMANDS_GROUP):
        table.setdefault(ep.name, ep.value)
    return table


def _summary(target: str) -> str:
    """The first docstring line of the module of ``target`` ("module:function"), read without importing it."""
    top, *parts = target.split(":")[0].split(".")
    try:  # only the top-level package is looked up: finding a submodule would import its parent packages
        spec = find_spec(top)
        if spec is None or not spec.submodule_search_locations:
            return ""
        base = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
        source = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        doc = ast.get_docstring(ast.parse(source.read_text()))
    except (ImportError, OSError, SyntaxError, ValueError):
        return ""
    return doc.strip().splitlines()[0] if doc else ""


def _resolve(target: str) -> Callable[[list[str] | None], int]:
    import importlib

    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr or "main")


def print_help() -> None:
    lines = ["usage: ssm-apps <command> [options]   (ssm-apps <command> --help for its options)", "",
             "Selective state space models (Mamba) for time series, vision, audio, medical imaging and codecs.", "",
             "Training (LightningCLI: --config FILE.yaml, then --section.key value overrides):"]
    lines += [f"  {name:<10} {text}" for name, text in TRAINING_COMMANDS.items()]
    lines += ["", "Other commands:"]
    for name, target in command_table().items():
        lines.append(f"  {name:<10} {_summary(target) or target}")
    lines += ["", f"Shipped configs (--config NAME works from any folder; files in {configs_root()}):"]
    for rel, text in shipped_configs():
        lines.append(f"  {rel:<44} {text}")
    lines += ["", "Every run writes to one folder, --run_dir (default runs/<config name>/<date-time>):",
              "checkpoints/ (best.ckpt, last.ckpt), logs/ (metrics.csv, config.yaml), predictions/.",
              "Add --traceback to any command to see the full traceback of an error."]
    print("\n".join(lines))


def find_config(value: str) -> str:
    """``value`` if it is a file, else the shipped config it names (``timeseries/smamba_etth1``,
    ``timeseries/smamba_etth1.yaml`` or ``configs/timeseries/smamba_etth1.yaml``), else ``value``."""
    if Path(value).exists():
        return value
    root = configs_root()
    name = value[len("configs/"):] if value.startswith("configs/") else value
    for candidate in (root / name, root / f"{name}.yaml"):
        if candidate.is_file():
            return str(candidate)
    return value


def resolve_config_args(argv: list[str]) -> list[str]:
    """``--config PATH`` / ``--config=PATH`` with ``find_config`` applied to each PATH."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--config" and i + 1 < len(out):
            out[i + 1] = find_config(out[i + 1])
        elif arg.startswith("--config="):
            out[i] = "--config=" + find_config(arg.split("=", 1)[1])
    return out


def _run(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print_help()
        return 0
    command, rest = argv[0], argv[1:]
    if command in TRAINING_COMMANDS:
        from .lightning_cli import run

        return run([command, *resolve_config_args(rest)])
    table = command_table()
    if command in table:
        return int(_resolve(table[command])(rest) or 0)
    print(f"ssm-apps: unknown command {command!r}; the commands are "
          f"{', '.join([*TRAINING_COMMANDS, *table])} (ssm-apps --help)", file=sys.stderr)
    return 2


_KEY_PHRASES = ("not accepted", "unrecognized", "problem with", "not found", "does not exist", "no such file",
                "expected", "must be", "invalid")


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line; of a multi-line (parser) message, the first line and the lines
    that say what is wrong."""
    lines = [line.strip(" -") for line in str(err).splitlines() if line.strip(" -") and "NoneType" not in line]
    if not lines:
        return type(err).__name__
    if len(lines) > 2:
        key = [line for line in lines[1:] if any(p in line.lower() for p in _KEY_PHRASES)]
        lines = [lines[0], *key[:3]] if key else lines[:3]
    return " ".join(" ".join(lines).split())


def main(argv: list[str] | None = None) -> int:
    """Runs ``ssm-apps``; returns (and, as a script, exits with) the exit status. A failure prints
    ``ssm-apps: error: <message>`` on one line; ``--traceback`` anywhere in ``argv`` re-raises it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    traceback = "--traceback" in argv
    argv = [a for a in argv if a != "--traceback"]
    try:
        return _run(argv)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as err:  # noqa: BLE001 -- user errors (bad file, bad shape, bad value) end here
        if traceback:
            raise
        message = one_line(err)
        print(f"ssm-apps: error: {message}  ({type(err).__name__}; add --traceback for the full trace)",
              file=sys.stderr)
        return 2 if type(err).__name__ == "ArgumentError" else 1  # 2: a bad command line, as argparse


if __name__ == "__main__":
    sys.exit(main())

"""``SSMAppsCLI``: the LightningCLI behind ``ssm-apps fit|validate|test|predict`` and ``ssm-apps demo``.

What it adds to Lightning's CLI (imported only when a training command runs, see ``ssm_apps.cli``):

* ``--run_dir`` (default ``runs/<config name>/<YYYYmmdd-HHMMSS>``; on resume, test and predict with a
  ``--ckpt_path <run>/checkpoints/*.ckpt``: that ``<run>``): the one folder of a run. Checkpoints go to
  ``<run_dir>/checkpoints`` (every ``ModelCheckpoint`` without a ``dirpath``), logs to
  ``<run_dir>/logs`` (``metrics.csv``, ``config.yaml``; continued on resume), a prediction writer's
  relative ``output_dir`` is taken relative to ``<run_dir>``; ``trainer.default_root_dir`` is ``<run_dir>``.
* ``fit`` refuses a folder holding another run's checkpoints unless ``--ckpt_path`` (resume) or
  ``--overwrite``; a lock on ``<run_dir>/.lock`` makes a second concurrent run there fail at once.
* ``last.ckpt`` every ``--checkpoint_every_n_steps`` optimizer steps and at every epoch end; random
  states and data-loader positions in every checkpoint (exact resume); SIGTERM/SIGINT write a
  resumable ``last.ckpt`` and make the command exit 143/130.
* A checkpoint given by ``--ckpt_path`` is checked first: a damaged file or another model's is refused
  with an error naming it. Checkpoints are written by ``AtomicCheckpointIO``, added to the trainer's
  ``plugins`` (a checkpoint IO plugin of your own is kept instead).
* One plain progress line per epoch when standard output is not a terminal; ``predict`` prints the
  folder its writers wrote to.
* Every ``ssm_apps`` domain package is imported first, so its tasks and data modules are listed in
  ``fit --help`` and can be named by class name (``--model ForecastingTask``).
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

import ssm_apps

from .training.checkpoint_io import AtomicCheckpointIO, check_checkpoint_matches, load_checkpoint_file
from .training.progress import EpochProgressLine
from .training.resume import ContinuingCSVLogger, InterruptCheckpoint, RandomStateCheckpoint, last_checkpoints
from .training.run_dir import CHECKPOINTS, LOGS, RunDirLock, default_run_dir, prepare_run_dir

__all__ = ["SSMAppsCLI", "import_domains", "run"]

DOMAINS_GROUP = "ssm_apps.domains"
_RUN_DIR_ENV = "SSM_APPS_RUN_DIR"  # hands the resolved run folder to DDP worker processes
_SHARED_PACKAGES = {"kernels", "layers", "training", "integrations", "configs"}
_LIGHTNING_CKPT_NAMES = {"best", "last", "hpc", "registry"}


def import_domains() -> list[str]:
    """Imports the packages that hold tasks and data modules, so that LightningCLI knows their classes.

    The packages are the entry points of the group ``ssm_apps.domains`` (``name = "module"``) of the
    installed distributions; when there are none (an install that predates the group), every
    sub-package of ``ssm_apps`` that is not shared code. A package whose optional dependencies are
    missing is skipped (its classes can still be named by full class path once installed).
    """
    names = [ep.value for ep in metadata.entry_points(group=DOMAINS_GROUP)]
    if not names:
        names = [f"ssm_apps.{m.name}" for m in pkgutil.iter_modules(ssm_apps.__path__)
                 if m.ispkg and m.name not in _SHARED_PACKAGES]
    imported = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        imported.append(name)
    return imported


def _declared_links() -> dict[str, str]:
    """``{data init argument: model key}`` of every imported data module's ``cli_links``: values the data
    module knows (e.g. lookback, horizon) given once, under ``data``, and copied into the model's config.
    A link applies only when the configured data module has that argument."""
    links: dict[str, str] = {}
    pending = [L.LightningDataModule]
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        links.update(getattr(cls, "cli_links", None) or {})
    return links


def _is_child_process() -> bool:
    return os.environ.get("LOCAL_RANK", "0") != "0" and _RUN_DIR_ENV in os.environ


class SSMAppsCLI(LightningCLI):
    """LightningCLI with subclass mode for models and data, run folders, exact resume and safe checkpoints
    (see the module docstring).

    Args:
        args: the command line after ``ssm-apps`` (``None`` = ``sys.argv[1:]``).
        run: run the subcommand (``False``: only parse and instantiate).
    """

    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        # `args` is how main() and demo() hand over the command line: not a mistake here.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        import_domains()
        self.run_dir: Path | None = None
        self.exit_code = 0
        self.interrupt: InterruptCheckpoint | None = None
        self._lock: RunDirLock | None = None
        self._resume_step: int | None = None
        try:
            super().__init__(
                L.LightningModule,
                L.LightningDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                save_config_kwargs={"overwrite": True},
                trainer_defaults={"enable_progress_bar": sys.stderr.isatty()},
                # parse errors raise (ssm_apps.cli prints them as one line) instead of usage + exit 2
                parser_kwargs={"exit_on_error": False,
                               **{name: {"exit_on_error": False} for name in ("fit", "validate", "test", "predict")}},
                args=args,
                run=run,
            )
        finally:
            if run:
                self.release()

    # ------------------------------------------------------------------------------ arguments
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--run_dir", type=Optional[str], default=None,  # noqa: UP045 (a runtime type)
                            help="The run's folder (checkpoints/, logs/, predictions/). Default: "
                                 "runs/<config name>/<date-time>; with --ckpt_path <run>/checkpoints/X.ckpt: <run>.")
        parser.add_argument("--overwrite", type=bool, default=False,
                            help="fit: delete the checkpoints and logs of a previous run in --run_dir first.")
        parser.add_argument("--checkpoint_every_n_steps", type=int, default=50,
                            help="fit: also write last.ckpt every N optimizer steps (mid-epoch resume; 0 = "
                                 "at epoch ends only).")
        for source, target in sorted(_declared_links().items()):
            parser.link_arguments(f"data.init_args.{source}", target)

    # -------------------------------------------------------------------------- run folder
    @property
    def _stage(self) -> str:
        """The subcommand; ``fit`` when not running one (``run=False``: demo trains with the result)."""
        return self.subcommand or "fit"

    def _cfg(self) -> Any:
        return self.config[self.subcommand] if self.subcommand else self.config

    def _resolve_run_dir(self, cfg: Any) -> Path:
        if cfg.get("run_dir"):
            return Path(cfg.run_dir)
        if _is_child_process():
            return Path(os.environ[_RUN_DIR_ENV])
        ckpt = cfg.get("ckpt_path")
        if ckpt and str(ckpt) not in _LIGHTNING_CKPT_NAMES and Path(ckpt).parent.name == CHECKPOINTS:
            return Path(ckpt).parent.parent
        configs = [c for c in (cfg.get("config") or []) if c is not None]
        name = Path(str(configs[-1])).stem if configs else type(self).__name__.lower()
        return default_run_dir(name)

    def before_instantiate_classes(self) -> None:
        cfg = self._cfg()
        self.run_dir = self._resolve_run_dir(cfg)
        cfg.trainer.default_root_dir = str(self.run_dir)
        if self._stage == "fit" and not _is_child_process():
            self._lock = RunDirLock(self.run_dir).acquire()  # first: --overwrite must not touch a live run
            try:
                prepare_run_dir(self.run_dir, resuming=bool(cfg.get("ckpt_path")), overwrite=bool(cfg.get("overwrite")))
            except BaseException:
                self.release()
                raise
            os.environ[_RUN_DIR_ENV] = str(self.run_dir)

    def release(self) -> None:
        """Releases the run folder's lock (after the run, or when it failed to start)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
            os.environ.pop(_RUN_DIR_ENV, None)

    # ----------------------------------------------------------------------------- trainer
    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list) -> L.Trainer:
        assert self.run_dir is not None
        ckpt_dir = self.run_dir / CHECKPOINTS
        if config.get("logger") in (None, True):
            config["logger"] = ContinuingCSVLogger(self.run_dir / LOGS)
        plugins = config.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        config["plugins"] = plugins
        self.interrupt = InterruptCheckpoint(ckpt_dir)
        extra = [RandomStateCheckpoint(), self.interrupt]
        if self._stage == "fit":
            every = int(self._cfg().get("checkpoint_every_n_steps") or 0)
            extra += last_checkpoints(ckpt_dir, every)
        if not sys.stdout.isatty():
            extra.append(EpochProgressLine())
        trainer = super()._instantiate_trainer(config, list(callbacks) + extra)
        for cb in trainer.callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.dirpath is None:
                cb.dirpath = str(ckpt_dir)
            out = getattr(cb, "output_dir", None)
            if isinstance(cb, BasePredictionWriter) and out is not None and not Path(out).is_absolute():
                cb.output_dir = self.run_dir / out
        return trainer

    # ------------------------------------------------------------------------- subcommands
    def _parse_ckpt_path(self) -> None:
        # Lightning reads the checkpoint's hyper-parameters here, before anything else: refuse a damaged
        # or non-checkpoint file first, with an error naming it
        if self.config.get("subcommand"):
            ckpt = self.config[self.config.subcommand].get("ckpt_path")
            if ckpt and str(ckpt) not in _LIGHTNING_CKPT_NAMES:
                load_checkpoint_file(ckpt, map_location="cpu")
        super()._parse_ckpt_path()

    def _check_ckpt(self) -> None:
        ckpt = self._cfg().get("ckpt_path")
        if not ckpt or str(ckpt) in _LIGHTNING_CKPT_NAMES:
            return
        checkpoint = load_checkpoint_file(ckpt, map_location="cpu")
        check_checkpoint_matches(ckpt, checkpoint, self.model)
        self._resume_step = int(checkpoint.get("global_step", 0))

    def before_fit(self) -> None:
        self._check_ckpt()
        logger = self.trainer.logger
        if self._resume_step is not None and isinstance(logger, ContinuingCSVLogger) and self.trainer.is_global_zero:
            logger.truncate_after(self._resume_step)

    before_validate = before_test = before_predict = _check_ckpt

    def after_predict(self) -> None:
        if not self.trainer.is_global_zero:
            return
        for cb in self.trainer.callbacks:
            out = getattr(cb, "output_dir", None)
            if isinstance(cb, BasePredictionWriter) and out is not None and Path(out).is_dir():
                files = sorted(p.name for p in Path(out).iterdir() if p.is_file())
                print(f"ssm-apps predict: wrote {', '.join(files) or 'nothing'} to {out}", flush=True)

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except SIGTERMException:
            if self.interrupt is None or self.interrupt.exit_code is None:
                raise
            self.exit_code = self.interrupt.exit_code


def run(argv: list[str]) -> int:
    """``ssm-apps fit|validate|test|predict ...``: the exit status (143/130 after SIGTERM/SIGINT)."""
    cli = SSMAppsCLI(args=argv)
    return cli.exit_code

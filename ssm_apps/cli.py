"""The ``ssm-apps`` command.

    ssm-apps fit|validate|test|predict --config CONFIG.yaml [--key value ...]   (LightningCLI)
    ssm-apps demo [--config CONFIG.yaml] [--key value ...]                       (fit, test, predict)

Models and data modules are given in the YAML by ``class_path`` (any LightningModule /
LightningDataModule); checkpoints are written atomically.
"""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import LightningCLI

from .training import AtomicCheckpointIO

DEMO_CONFIG = "configs/timeseries/smamba_etth1.yaml"


class SSMAppsCLI(LightningCLI):
    """LightningCLI with subclass mode for models and data, and atomic checkpoint writes."""

    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        # `args` is how main() and demo() hand over the command line: not a mistake here.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        super().__init__(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            args=args,
            run=run,
        )

    def instantiate_trainer(self, **kwargs):  # type: ignore[override]
        trainer = super().instantiate_trainer(**kwargs)
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer


def demo(args: list[str]) -> dict[str, float]:
    """Train, test and predict with a config (default: S-Mamba on the bundled ETTh1); print the metrics."""
    if "--config" not in args:
        if not Path(DEMO_CONFIG).is_file():
            raise SystemExit(f"ssm-apps demo: run it from the repository root ({DEMO_CONFIG} not found) or pass --config")
        args = ["--config", DEMO_CONFIG, *args]
    start = time.perf_counter()
    cli = SSMAppsCLI(args=args, run=False)
    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    trainer.fit(model, datamodule=data)
    metrics = trainer.test(model, datamodule=data, ckpt_path="best")[0]
    trainer.predict(model, datamodule=data, ckpt_path="best", return_predictions=False)
    minutes = (time.perf_counter() - start) / 60
    summary = {k: float(v) for k, v in metrics.items()}
    print("\n== ssm-apps demo ==")
    print("  " + "  ".join(f"{k} {v:.4f}" for k, v in summary.items()))
    print(f"  best checkpoint: {trainer.checkpoint_callback.best_model_path}")
    for writer in (cb for cb in trainer.callbacks if isinstance(cb, BasePredictionWriter)):
        print(f"  predictions written under: {getattr(writer, 'output_dir', '(see the writer)')}")
    print(f"  wall time: {minutes:.1f} min")
    return summary


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "demo":
        demo(argv[1:])
        return
    SSMAppsCLI(args=argv)


if __name__ == "__main__":
    main()

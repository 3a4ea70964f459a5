"""Train, test and predict a shipped demo (ssm-apps demo [timeseries|vision] [--quick] [--key value ...])."""
from __future__ import annotations

import time
from pathlib import Path

import yaml

from .cli import configs_root

__all__ = ["load_demos", "main", "run_demo"]


def load_demos() -> dict[str, dict]:
    """The demos of ``configs/demos.yaml``: ``{name: {"summary", "configs", "quick"}}`` (first = default)."""
    path = configs_root() / "demos.yaml"
    demos = yaml.safe_load(path.read_text())
    if not isinstance(demos, dict) or not demos:
        raise ValueError(f"{path}: expected a mapping of demo names to their configs")
    return demos


def main(argv: list[str] | None = None) -> int:
    """``ssm-apps demo``: fit, test the best checkpoint, predict with it, print the metrics and the files.

    Args:
        argv: ``[NAME] [--quick] [--config FILE ...] [LightningCLI overrides ...]``.
    """
    demos = load_demos()
    argv = list(argv or [])
    if "-h" in argv or "--help" in argv:
        print("usage: ssm-apps demo [NAME] [--quick] [LightningCLI options: --trainer.max_epochs 2, --run_dir DIR]\n"
              "\nTrain, test (best checkpoint) and predict one of the shipped demos; print the metrics and files.\n")
        for name, demo in demos.items():
            print(f"  {name:<12} {demo.get('summary', '')}")
        print("\n  --quick      a one-minute smoke run (one epoch, a few batches)")
        return 0
    name = next(iter(demos))
    if argv and not argv[0].startswith("-"):
        name = argv.pop(0)
        if name not in demos:
            raise ValueError(f"ssm-apps demo: unknown demo {name!r}; choose one of {sorted(demos)}")
    overrides = [a for a in argv if a != "--quick"]
    demo, root = demos[name], configs_root()
    configs = [] if "--config" in overrides else [a for c in demo["configs"] for a in ("--config", str(root / c))]
    quick = [str(a) for a in demo.get("quick", [])] if "--quick" in argv else []
    code, _ = run_demo(configs + quick + overrides)
    return code


def run_demo(args: list[str]) -> tuple[int, dict[str, float]]:
    """Fit, test the best checkpoint and predict with LightningCLI ``args``.

    Args:
        args: LightningCLI arguments (``--config`` files and overrides).

    Returns:
        ``(exit code, test metrics)``; the metrics are empty when an interrupt stopped the fit.
    """
    from lightning.pytorch.callbacks import BasePredictionWriter
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from .lightning_cli import SSMAppsCLI

    start = time.perf_counter()
    cli = SSMAppsCLI(args=args, run=False)
    try:
        trainer, model, data = cli.trainer, cli.model, cli.datamodule
        try:
            trainer.fit(model, datamodule=data)
        except SIGTERMException:
            if cli.interrupt is None or cli.interrupt.exit_code is None:
                raise
            return cli.interrupt.exit_code, {}
        ckpt = "best" if trainer.checkpoint_callback and trainer.checkpoint_callback.best_model_path else None
        metrics = trainer.test(model, datamodule=data, ckpt_path=ckpt)[0]
        trainer.predict(model, datamodule=data, ckpt_path=ckpt, return_predictions=False)
    finally:
        cli.release()
    minutes = (time.perf_counter() - start) / 60
    print("\n== ssm-apps demo ==")
    print("  " + "  ".join(f"{k} {float(v):.4f}" for k, v in metrics.items()))
    print(f"  run folder: {cli.run_dir}")
    print(f"  best checkpoint: {trainer.checkpoint_callback.best_model_path if ckpt else '(none)'}")
    for writer in (cb for cb in trainer.callbacks if isinstance(cb, BasePredictionWriter)):
        out = getattr(writer, "output_dir", None)
        if out is not None and Path(out).is_dir():
            print(f"  predictions: {out} ({', '.join(sorted(p.name for p in Path(out).iterdir()))})")
    print(f"  wall time: {minutes:.1f} min")
    return 0, {k: float(v) for k, v in metrics.items()}

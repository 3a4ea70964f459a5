"""Fine-tune a segmentation config (default: SegMAN-T on the membrane slices) on one GPU within a time budget.

    python benchmarks/train_segmentation_gpu.py --out benchmarks/results/segman_membrane
    python benchmarks/train_segmentation_gpu.py --config configs/vision/vmamba_upernet_membrane.yaml --out ...
    python benchmarks/train_segmentation_gpu.py --quick --device cpu      # smoke test (tiny model, 3 steps)

Builds the task and datamodule from the YAML's ``init_args`` (the same file ``ssm-apps fit`` reads),
overriding the trainer for the GPU (bf16 mixed precision, ``--max-steps``, a ``--max-minutes`` wall-clock
guard), then tests the final weights on the test split (last 6 slices) and writes
``<out>/metrics.json`` (test mIoU, per-class IoU, pixel accuracy, steps, wall time, device) and
``<out>/model.ckpt`` (weights only; ``SegmentationTask.load_from_checkpoint`` rebuilds it), and prints a table.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import lightning as L
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TINY = {"embed_dims": [16, 32, 48, 64], "depths": [1, 1, 1, 1], "num_heads": [1, 2, 3, 4], "kernel_sizes": [3, 3, 3, 3],
        "img_size": 96}


def _load(class_path: str):
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(REPO / "configs/vision/segman_tiny_membrane.yaml"))
    p.add_argument("--data-root", default=None, help="dataset folder (default: the config's, relative to the repo)")
    p.add_argument("--out", default=str(REPO / "benchmarks/results/segman_membrane"))
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--max-steps", type=int, default=None, help="default: the config's trainer.max_steps")
    p.add_argument("--max-minutes", type=float, default=3.3, help="wall-clock guard for fit")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--num-workers", type=int, default=8)
    p.add_argument("--na-backend", default=None, choices=["torch", "flex"], help="SegMAN encoders only")
    p.add_argument("--quick", action="store_true", help="tiny model, small crops, 3 steps (smoke test)")
    args = p.parse_args(argv)

    cfg = yaml.safe_load(Path(args.config).read_text())
    model_args = dict(cfg["model"]["init_args"])
    data_args = dict(cfg["data"]["init_args"])
    root = Path(args.data_root or data_args["root"])
    data_args["root"] = str(root if root.is_absolute() else (REPO / root).resolve())
    data_args["num_workers"] = args.num_workers
    max_steps = args.max_steps or cfg["trainer"]["max_steps"]
    if args.batch_size:
        data_args["batch_size"] = args.batch_size
    if args.na_backend:
        model_args["backbone_kwargs"] = dict(model_args.get("backbone_kwargs") or {}, na_backend=args.na_backend)
    if args.quick:
        model_args["backbone_kwargs"] = dict(model_args.get("backbone_kwargs") or {})
        if model_args["backbone"].startswith("segman"):
            model_args["backbone_kwargs"].update(TINY)
        else:
            model_args["backbone_kwargs"].update(dims=16, depths=[1, 1, 1, 1])
        model_args["head_kwargs"] = {k: 16 for k in (model_args.get("head_kwargs") or {"channels": 16})}
        data_args.update(crop_size=[96, 96], scale=[128, 128], eval_scale=[128, 128], batch_size=2, train_repeat=1,
                         num_workers=0)
        max_steps = 3
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.get("seed_everything", 0))
    task = _load(cfg["model"]["class_path"])(**model_args)
    dm = _load(cfg["data"]["class_path"])(**data_args)
    on_gpu = args.device == "cuda"
    if on_gpu and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device", file=sys.stderr)
        return 2
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    trainer = L.Trainer(
        max_steps=max_steps, max_time={"minutes": args.max_minutes}, accelerator="gpu" if on_gpu else "cpu",
        devices=1, precision="bf16-mixed" if on_gpu else "32-true", limit_val_batches=0, num_sanity_val_steps=0,
        logger=L.pytorch.loggers.CSVLogger(str(out), name="logs"), enable_checkpointing=False,
        log_every_n_steps=10, enable_progress_bar=False,
    )
    t0 = time.perf_counter()
    trainer.fit(task, dm)
    fit_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    metrics = trainer.test(task, dm, verbose=False)[0]
    test_s = time.perf_counter() - t1
    trainer.save_checkpoint(out / "model.ckpt", weights_only=True)
    device = torch.cuda.get_device_name() if on_gpu else "cpu"
    result = {
        "config": str(Path(args.config).name), "device": device, "steps": int(trainer.global_step),
        "max_steps": max_steps, "fit_s": round(fit_s, 1), "test_s": round(test_s, 1),
        "params": sum(p.numel() for p in task.model.parameters()),
        **{k: float(v) for k, v in metrics.items()}, "quick": args.quick,
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    print(f"\n{'config':<34} {'device':<24} {'steps':>6} {'fit s':>7} {'test mIoU':>10} {'aAcc':>7}")
    print(f"{result['config']:<34} {device[:24]:<24} {result['steps']:>6} {fit_s:>7.1f} "
          f"{result['test_mIoU']:>10.4f} {result['test_aAcc']:>7.4f}")
    for k, v in result.items():
        if k.startswith("test_IoU_"):
            print(f"  {k}: {v:.4f}")
    print(f"wrote {out / 'metrics.json'} and {out / 'model.ckpt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

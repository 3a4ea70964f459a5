"""The real-data SSAMBA result in one run: FSDD pretrain -> fine-tune, the same budget from scratch, Sonic Pi.

    python benchmarks/train_audio_gpu.py [--out benchmarks/results/audio_fsdd] [--device cuda]
    python benchmarks/train_audio_gpu.py --quick --device cpu          # smoke test (tiny model, few clips)

1. Features: Free Spoken Digit Dataset (``../shared/data/audio/fsdd``), official split (takes 0-4 test =
   300 clips, takes 5-49 train = 2,700), 128 frames, Speech Commands normalisation; no validation split
   (no model selection: the last epoch is tested).
2. Self-supervised pretraining of SSAMBA-tiny (192 x 24) on the training clips only (labels unused):
   AudioPretrainTask, 16 x 16 patches stride 16 (64 patches), cluster masking, InfoNCE + 10 x MSE.
3. Fine-tuning from that checkpoint (stride 10, 144 patches, mean pooling, SpecAugment, mixup, noise),
   and the identical fine-tuning from random initialisation ("scratch", same epochs and steps).
4. Sonic Pi samples (165 FLAC, 44.1 kHz stereo/mono, 14 classes, ``labels.csv``), stratified 70/30
   split, fine-tuned from the FSDD-pretrained encoder and from scratch, beside the majority-class baseline.

Writes ``<out>/results.json`` (accuracies, epochs, steps, wall times, device), the pretraining checkpoint
``<out>/ssamba_tiny_fsdd_pretrained.ckpt`` and ``<out>/ssamba_tiny_fsdd_{finetune,scratch}.pt`` (fp16
weights + constructor kwargs), prints a table. Every phase also has a wall-time cap (``--max-minutes`` in
total) so the run never overshoots. ``--phases`` runs a subset, e.g. two processes side by side on one GPU:

    python benchmarks/train_audio_gpu.py --phases pretrain,finetune --out runs/a
    python benchmarks/train_audio_gpu.py --phases scratch --out runs/b
    python benchmarks/train_audio_gpu.py --phases sonic --pretrained runs/a/ssamba_tiny_fsdd_pretrained.ckpt
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import lightning as L
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ssm_apps.audio import AudioClassificationTask, AudioDataModule, AudioPretrainTask

# share of --max-minutes given to each phase (renormalised over the phases run)
PHASE_SHARE = {"pretrain": 0.33, "finetune": 0.22, "scratch": 0.22, "sonic": 0.10}


def default_data_root() -> Path:
    for root in (REPO.parent / "shared" / "data" / "audio", REPO / "shared" / "data" / "audio"):
        if root.is_dir():
            return root
    return REPO.parent / "shared" / "data" / "audio"


def trainer(args: argparse.Namespace, root: Path, epochs: int, minutes: float) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs, max_time=timedelta(minutes=minutes), accelerator="gpu" if args.device == "cuda" else "cpu",
        devices=1, precision=args.precision, logger=False, enable_model_summary=False, enable_progress_bar=False,
        default_root_dir=str(root), num_sanity_val_steps=0, gradient_clip_val=args.clip,
    )


def run_finetune(args, dm, model_kwargs, pretrained, epochs, minutes, root, lr, batch_warmup) -> dict:
    """Fine-tune (or train from scratch when ``pretrained`` is None) and test the last epoch."""
    L.seed_everything(args.seed, workers=True)
    task = AudioClassificationTask(
        num_classes=dm.num_classes, model_kwargs=model_kwargs, pretrained=pretrained, classes=dm.classes,
        lr=lr, head_lr_mult=args.head_lr_mult, warmup_steps=batch_warmup, lr_decay_start=args.decay_start,
        lr_decay_step=1, lr_decay=args.decay, mixup=args.mixup, freqm=args.freqm, timem=args.timem,
        mask_value=args.mask_value, noise=True, label_smoothing=0.0,
    )
    tr = trainer(args, root, epochs, minutes)
    start = time.perf_counter()
    tr.fit(task, datamodule=dm)
    fit_s = time.perf_counter() - start
    test = tr.test(task, datamodule=dm, verbose=False)[0]
    return {"test_acc": float(test["test_acc"]), "test_loss": float(test["test_loss"]), "epochs": tr.current_epoch,
            "steps": tr.global_step, "fit_seconds": round(fit_s, 1), "pretrained": pretrained is not None,
            "train_clips": len(dm.files["train"]), "test_clips": len(dm.files["test"]), "task": task}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "audio_fsdd")
    p.add_argument("--data-root", type=Path, default=default_data_root())
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--quick", action="store_true", help="tiny model, 4 clips per class, 1 epoch each (smoke test)")
    p.add_argument("--precision", default="32-true", help="Lightning precision (default 32-true, TF32 matmuls)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=8, help="feature worker processes")
    p.add_argument("--pretrain-epochs", type=int, default=40)
    p.add_argument("--finetune-epochs", type=int, default=20)
    p.add_argument("--sonic-epochs", type=int, default=40)
    p.add_argument("--pretrain-lr", type=float, default=5e-4)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--head-lr-mult", type=float, default=1.0)
    p.add_argument("--decay-start", type=int, default=8)
    p.add_argument("--decay", type=float, default=0.85)
    p.add_argument("--mixup", type=float, default=0.3)
    p.add_argument("--freqm", type=int, default=24)
    p.add_argument("--timem", type=int, default=24)
    p.add_argument("--mask-value", type=float, default=0.615, help="SpecAugment fill: -mean/(2 std), SC statistics")
    p.add_argument("--clip", type=float, default=5.0, help="gradient-norm clip")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=3.3, help="wall-time cap shared by the phases")
    p.add_argument("--phases", default="pretrain,finetune,scratch,sonic",
                   help="comma-separated subset of pretrain,finetune,scratch,sonic (separate processes can run "
                        "the phases side by side on one GPU)")
    p.add_argument("--pretrained", type=Path, default=None,
                   help="a pretraining checkpoint to fine-tune from instead of running the pretrain phase")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("train_audio_gpu: --device cuda but no CUDA device; use --device cpu (with --quick)", file=sys.stderr)
        return 2
    torch.set_float32_matmul_precision("high")
    t0 = time.perf_counter()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = out / "lightning"
    if args.quick:
        model = {"embed_dim": 32, "depth": 2, "drop_path_rate": 0.0}
        args.pretrain_epochs, args.finetune_epochs, args.sonic_epochs = 1, 1, 1
        per_class = 4
    else:
        model, per_class = {}, None
    phases = [x for x in args.phases.split(",") if x]
    unknown = sorted(set(phases) - set(PHASE_SHARE))
    if unknown:
        p.error(f"--phases: unknown {unknown}; expected a subset of {sorted(PHASE_SHARE)}")
    if args.pretrained is not None and "pretrain" in phases:
        p.error("--pretrained and the pretrain phase exclude each other")
    if args.pretrained is not None and not args.pretrained.is_file():
        p.error(f"--pretrained: no such file {args.pretrained}")
    if {"finetune", "sonic"} & set(phases) and "pretrain" not in phases and args.pretrained is None:
        p.error("--phases finetune/sonic need the pretrain phase or --pretrained CKPT")
    total_share = sum(PHASE_SHARE[x] for x in phases)
    budget = {x: args.max_minutes * PHASE_SHARE[x] / total_share for x in phases}
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or "cpu"
    results: dict = {"device": device, "torch": torch.__version__, "quick": args.quick,
                     "args": {k: str(v) for k, v in vars(args).items()}}
    table = []

    # 1. FSDD features
    fsdd = AudioDataModule(str(args.data_root / "fsdd"), pattern="fsdd", split_field="take", test_values=list(range(5)),
                           val_ratio=0.0, target_length=128, norm="speechcommands", batch_size=args.batch,
                           feature_workers=args.workers, max_per_class=per_class)
    fsdd.setup("fit")
    feat_s = time.perf_counter() - t0
    results["features_seconds"] = round(feat_s, 1)
    print(f"FSDD features: {len(fsdd.files['train'])} train / {len(fsdd.files['test'])} test clips in {feat_s:.1f} s")
    batch_warmup = max(1, len(fsdd.files["train"]) // args.batch) * 2  # two epochs of warm-up

    # 2. pretraining on the training clips
    ckpt = args.pretrained
    if "pretrain" in phases:
        L.seed_everything(args.seed, workers=True)
        pre = AudioPretrainTask(model_kwargs=dict(model, input_tdim=128), lr=args.pretrain_lr,
                                warmup_steps=batch_warmup, schedule="cosine", min_lr=args.pretrain_lr / 20)
        tr = trainer(args, work / "pretrain", args.pretrain_epochs, budget["pretrain"])
        start = time.perf_counter()
        tr.fit(pre, train_dataloaders=fsdd.train_dataloader())
        pre_s = time.perf_counter() - start
        ckpt = out / "ssamba_tiny_fsdd_pretrained.ckpt"
        tr.save_checkpoint(ckpt, weights_only=True)
        pre_metrics = {k: float(v) for k, v in tr.callback_metrics.items() if k.endswith("_epoch") or k == "train_loss"}
        results["pretrain"] = {"epochs": tr.current_epoch, "steps": tr.global_step, "seconds": round(pre_s, 1),
                               **pre_metrics}
        print(f"pretraining: {tr.current_epoch} epochs, {tr.global_step} steps, {pre_s:.1f} s, {pre_metrics}")
    if ckpt is not None:
        results["pretrained_checkpoint"] = str(ckpt)

    # 3. fine-tune vs scratch (identical settings and budget)
    ft_kwargs = dict(model, input_tdim=128, patch_stride=10)
    for phase, init, label in (("finetune", ckpt, "FSDD pretrained -> fine-tuned"),
                               ("scratch", None, "FSDD from scratch (same budget)")):
        if phase not in phases:
            continue
        r = run_finetune(args, fsdd, ft_kwargs, None if init is None else str(init), args.finetune_epochs,
                         budget[phase], work / phase, args.lr, batch_warmup)
        task = r.pop("task")
        results[f"fsdd_{'finetuned' if phase == 'finetune' else 'scratch'}"] = r
        table.append((label, r))
        weights = {k: v.half() if v.is_floating_point() else v for k, v in task.model.state_dict().items()}
        torch.save({"model_name": "ssamba_tiny", "model_kwargs": dict(ft_kwargs, num_classes=fsdd.num_classes),
                    "classes": fsdd.classes, "state_dict": weights}, out / f"ssamba_tiny_fsdd_{phase}.pt")

    # 4. Sonic Pi: other audio (44.1 kHz, stereo and mono), stratified split
    if "sonic" in phases:
        sonic = AudioDataModule(str(args.data_root / "sonic_pi"), labels_csv=str(args.data_root / "sonic_pi" / "labels.csv"),
                                label_column="label_prefix", test_ratio=0.3, val_ratio=0.0, seed=args.seed,
                                target_length=256, norm="esc50", batch_size=min(args.batch, 32),
                                feature_workers=args.workers, max_per_class=per_class)
        sonic.setup("fit")
        train_counts = sonic.class_counts("train")
        majority = train_counts.most_common(1)[0][0]
        test_counts = sonic.class_counts("test")
        majority_acc = test_counts[majority] / max(1, sum(test_counts.values()))
        sonic_kwargs = dict(model, input_tdim=256, patch_stride=10)
        sonic_warm = max(1, len(sonic.files["train"]) // sonic.hparams.batch_size) * 2
        sonic_args = argparse.Namespace(**{**vars(args), "mask_value": 0.618, "decay_start": args.sonic_epochs})
        half = budget["sonic"] / 2
        sonic_ft = run_finetune(sonic_args, sonic, sonic_kwargs, str(ckpt), args.sonic_epochs, half,
                                work / "sonic_ft", args.lr, sonic_warm)
        sonic_sc = run_finetune(sonic_args, sonic, sonic_kwargs, None, args.sonic_epochs, half,
                                work / "sonic_scratch", args.lr, sonic_warm)
        sonic_ft.pop("task")
        sonic_sc.pop("task")
        results["sonic_pi"] = {"pretrained_on_fsdd": sonic_ft, "scratch": sonic_sc, "majority_class": majority,
                               "majority_baseline_acc": majority_acc, "test_counts": dict(Counter(test_counts)),
                               "padded_files": sonic.padded_files}
        table += [("Sonic Pi from FSDD-pretrained", sonic_ft), ("Sonic Pi from scratch", sonic_sc)]

    results["total_seconds"] = round(time.perf_counter() - t0, 1)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    print(f"\n== SSAMBA-tiny on {device} ==")
    print(f"{'run':34s} {'test acc':>9s} {'epochs':>7s} {'steps':>6s} {'fit s':>7s}")
    for name, r in table:
        print(f"{name:34s} {r['test_acc']:9.4f} {r['epochs']:7d} {r['steps']:6d} {r['fit_seconds']:7.1f}")
    if "sonic_pi" in results:
        s = results["sonic_pi"]
        print(f"{'Sonic Pi majority class (' + s['majority_class'] + ')':34s} {s['majority_baseline_acc']:9.4f}")
    print(f"features {feat_s:.1f} s; total {results['total_seconds']:.1f} s; wrote {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

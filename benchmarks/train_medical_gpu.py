"""Real-data results of the medical stack in one run (issue 12, item 7), on one GPU in about 4 minutes.

(a) multi-organ CT: HyMamba (official 96^3 preset, 12 organs) trained from scratch on TotalSegmentator's
    ``example_ct.nii.gz`` (3 mm) with its label map, evaluated on the *other* scan, the DICOM series
    ``example_ct_dicom/`` (MONAI's PydicomReader, resampled to 3 mm) against ``example_seg_dicom.nii.gz``:
    per-organ and mean Dice on the resampled grid, and again after writing the prediction as NIfTI on the
    DICOM grid and reading it back with nibabel (NIfTI/DICOM in, NIfTI out). The labels are TotalSegmentator's
    model outputs, not manual annotations.
(b) 2-D: HyMamba with spatial_dims=2 on the ISBI-2012 membrane slices (first 24 train, last 6 test), Dice.
(c) MambaMIM pre-training on the unlabelled CTs (1.5 mm abdomen CT, head CT, lung CT; no labels) then
    fine-tuning, against (a)'s from-scratch run at the same total number of optimizer steps
    (pre-training steps + fine-tuning steps = scratch steps), plus pre-training + a full fine-tuning budget.

    python benchmarks/train_medical_gpu.py --out benchmarks/results/medical_train        # H200, ~4 min
    python benchmarks/train_medical_gpu.py --quick --device cpu --out runs/medical_smoke  # CPU smoke test

Needs monai, nibabel, pydicom (and Pillow) besides torch / lightning / timm. Writes ``results.json``, the
DICOM prediction ``example_ct_dicom_seg.nii.gz`` and (``--save-ckpt``) fp16 weights under ``--out``.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ssm_apps.medical.data import MedicalDataModule  # noqa: E402
from ssm_apps.medical.task import MedicalPretrainTask, MedicalSegmentationTask, lr_wd_at  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data"
TS = Path("medical3d") / "totalsegmentator"  # below --data-root
# TotalSegmentator "total" classes present in both CT label maps (name: original label value)
ORGANS = {"spleen": 1, "liver": 5, "stomach": 6, "pancreas": 7, "colon": 20, "vertebrae_T12": 32, "aorta": 52,
          "inferior_vena_cava": 63, "portal_splenic_vein": 64, "spinal_cord": 79, "autochthon_left": 86,
          "autochthon_right": 87}
UNLABELLED = [TS / "example_ct_1.5mm_unlabelled.nii.gz", Path("medical3d") / "invesalius_head_ct" /
              "promed_ct0051_head.nii.gz", Path("medical3d") / "pyradiomics" / "lung1_image.nii.gz"]


class Repeat(torch.utils.data.Dataset):
    """``n`` draws of the random crops of one cached volume."""

    def __init__(self, dataset, n: int) -> None:
        self.dataset, self.n = dataset, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.dataset[i % len(self.dataset)]


def loader(dataset, steps: int, batch: int, workers: int):
    from monai.data import DataLoader

    return DataLoader(Repeat(dataset, steps * batch), batch_size=batch, shuffle=True, num_workers=workers,
                      persistent_workers=False, drop_last=True)


def autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def train_loop(task, data, steps: int, device: torch.device, log_every: int, name: str) -> dict:
    """Plain loop over the task's own pieces (model, loss, param groups, lr/wd schedule, clipping)."""
    task.to(device).train()
    opt = task.configure_optimizers()["optimizer"]  # an SSMTask dict; the loop below sets lr and wd per step
    h = task.hparams
    t0, losses = time.perf_counter(), []
    for step, batch in enumerate(data):
        if step >= steps:
            break
        lr, wd = lr_wd_at(step, steps, h.lr, h.min_lr, h.warmup_steps, h.warmup_start, h.weight_decay,
                          h.weight_decay_end)
        for g in opt.param_groups:
            g["lr"], g["weight_decay"] = lr, wd * g["wd_scale"]
        batch = {k: torch.as_tensor(v).to(device, non_blocking=True) for k, v in batch.items()
                 if k in ("image", "label")}
        with autocast(device):
            if isinstance(task, MedicalSegmentationTask):
                loss = task.loss_fn(task.model(batch["image"]), batch["label"])
            else:
                loss = task.model(batch["image"])["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if h.grad_clip:
            torch.nn.utils.clip_grad_norm_(task.parameters(), h.grad_clip)
        opt.step()
        losses.append(float(loss.detach()))
        if step % log_every == 0 or step == steps - 1:
            print(f"  [{name}] step {step:4d}/{steps}  loss {losses[-1]:.4f}  lr {lr:.2e}  "
                  f"{time.perf_counter() - t0:6.1f}s", flush=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"steps": steps, "seconds": round(time.perf_counter() - t0, 1), "first_loss": losses[0],
            "final_loss": float(np.mean(losses[-max(1, steps // 10):]))}


@torch.no_grad()
def dice_scores(pred: torch.Tensor, label: torch.Tensor, n_classes: int) -> list[float]:
    """Per-class Dice of label maps (classes 1..n-1); NaN where both are empty."""
    out = []
    for k in range(1, n_classes):
        p, t = pred == k, label == k
        denom = int(p.sum() + t.sum())
        out.append(float("nan") if denom == 0 else 2.0 * int((p & t).sum()) / denom)
    return out


@torch.no_grad()
def evaluate(task, dataset, device: torch.device, names: list[str]) -> tuple[dict, list]:
    task.to(device).eval()
    per_class, items = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        x = item["image"][None].to(device)
        with autocast(device):
            logits = task.infer(x)
        pred = logits.float().argmax(1)[0].cpu()
        per_class.append(dice_scores(pred, torch.as_tensor(item["label"][0]).long(), len(names) + 1))
        items.append((item, pred))
    scores = np.nanmean(np.array(per_class, dtype=float), axis=0)
    result = {n: round(float(s), 4) for n, s in zip(names, scores)}
    result["mean"] = round(float(np.nanmean(scores)), 4)
    return result, items


def nifti_roundtrip_dice(item, pred: torch.Tensor, dataset, out_dir: Path, names: list[str], reference: Path) -> dict:
    """Invert the prediction onto the DICOM grid, write it as NIfTI, read it back with nibabel and score it
    against the ``reference`` label NIfTI in physical (RAS) space."""
    import nibabel as nib
    from monai.data import MetaTensor
    from monai.transforms import Invertd

    from ssm_apps.medical.prediction_writer import write_label_map

    image = item["image"]
    pred_mt = MetaTensor(pred[None].to(torch.uint8), affine=image.affine, meta=dict(image.meta),
                         applied_operations=list(image.applied_operations))
    inv = Invertd(keys="pred", transform=dataset.transform, orig_keys="image", nearest_interp=True)(
        {"pred": pred_mt, "image": image})
    source = image.meta["filename_or_obj"]
    path = write_label_map(torch.as_tensor(inv["pred"])[0].numpy(), source, out_dir,
                           affine=image.meta.get("original_affine"))
    ours = nib.as_closest_canonical(nib.load(str(path)))
    ref = nib.as_closest_canonical(nib.load(str(reference)))
    if not np.allclose(ours.affine, ref.affine, atol=1e-3) or ours.shape != ref.shape:
        raise RuntimeError(f"written prediction grid {ours.shape} {ours.affine.tolist()} does not match the reference "
                           f"{ref.shape} {ref.affine.tolist()}")
    ref_lab = np.asarray(ref.dataobj).astype(np.int64)
    mapped = np.zeros_like(ref_lab)
    for k, value in enumerate(ORGANS.values(), 1):
        mapped[ref_lab == value] = k
    scores = dice_scores(torch.as_tensor(np.asarray(ours.dataobj).astype(np.int64)), torch.as_tensor(mapped),
                         len(names) + 1)
    result = {n: round(s, 4) for n, s in zip(names, scores)}
    result["mean"] = round(float(np.nanmean(scores)), 4)
    result["file"] = str(path)
    return result


def seg_task(args, num_classes: int, names: list[str], model_kwargs: dict, roi, lr: float, steps: int,
             pretrained: str | None = None, spatial_dims: int = 3, model: str = "hymamba_official"):
    return MedicalSegmentationTask(model, dict(model_kwargs, spatial_dims=spatial_dims), num_classes=num_classes,
                                   class_names=names, lr=lr, min_lr=lr * 0.01, warmup_steps=max(1, steps // 20),
                                   weight_decay=1e-5, grad_clip=1.0, roi_size=roi, sw_batch_size=4,
                                   overlap=args.overlap, padding_mode=args.eval_padding[0], pretrained=pretrained)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="benchmarks/results/medical_train")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="tiny model, sizes and budgets (CPU smoke test)")
    p.add_argument("--seg-steps", type=int, default=400, help="(a) scratch steps = (c) total budget")
    p.add_argument("--pretrain-steps", type=int, default=120, help="(c) MambaMIM steps inside that budget")
    p.add_argument("--full-finetune", action=argparse.BooleanOptionalAction, default=True,
                   help="(c) also fine-tune the pre-trained encoder for the full --seg-steps")
    p.add_argument("--steps-2d", type=int, default=300)
    p.add_argument("--batch", type=int, default=2, help="3-D crops per step")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--overlap", type=float, default=0.5)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--save-ckpt", action="store_true", help="save fp16 weights of the trained networks")
    p.add_argument("--parts", default="abc",
                   help="which results to run: any of a, b, c (c compares with a: run both in one process, or a "
                        "and c in two processes on one GPU, each with its own --out)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA, help="folder holding medical3d/ and medical2d/")
    p.add_argument("--intensity-aug", type=float, default=0.0,
                   help="3-D training crops: probability of MONAI's random intensity scale / shift (0 = off)")
    p.add_argument("--fov-aug", type=float, default=0.0,
                   help="3-D training crops: probability of keeping one random axial slab only (MedicalDataModule "
                        "fov_aug; the test series is a 14-slice slab at 3 mm)")
    p.add_argument("--eval-padding", nargs="+", default=["constant"], choices=["constant", "reflect", "replicate"],
                   help="sliding-window padding modes to evaluate (the first gives dice_test, the others "
                        "dice_test_<mode>)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    quick = args.quick
    roi = (32, 32, 32) if quick else (96, 96, 96)
    pixdim = (6.0, 6.0, 6.0) if quick else (3.0, 3.0, 3.0)
    model_kwargs = (dict(channels=(4, 8, 8, 16, 24), depths=(1, 1, 1, 1, 1), exp_r=(2, 2, 2, 2, 2), depth=1)
                    if quick else {})
    seg_steps, pre_steps = (4, 2) if quick else (args.seg_steps, args.pretrain_steps)
    steps_2d = 3 if quick else args.steps_2d
    workers = 0 if quick else args.workers
    names = list(ORGANS)
    t_start = time.perf_counter()
    results: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
                     or "cpu", "torch": torch.__version__, "quick": quick, "roi": roi, "pixdim": pixdim,
                     "organs": ORGANS, "eval_padding": args.eval_padding, "budget_steps": seg_steps,
                     "pretrain_steps": pre_steps, "batch": args.batch,
                     "note": "labels are TotalSegmentator model outputs (pseudo-labels), not manual annotations"}

    parts = set(args.parts)
    t = time.perf_counter()
    common = dict(labels=list(ORGANS.values()), pixdim=pixdim, intensity_range=(-175.0, 250.0), roi_size=roi,
                  num_samples=args.batch, cache="memory")
    results["intensity_aug"], results["fov_aug"] = args.intensity_aug, args.fov_aug
    ts = args.data_root / TS
    dm = MedicalDataModule(intensity_aug=args.intensity_aug, fov_aug=args.fov_aug,
                           train=[{"image": str(ts / "example_ct.nii.gz"),
                                   "label": str(ts / "example_seg_fast_force_split.nii.gz")}],
                           test=[{"image": str(ts / "example_ct_dicom"),
                                  "label": str(ts / "example_seg_dicom.nii.gz")}],
                           **common)
    test_eval = MedicalDataModule(test=dm.items["test"], crop_foreground=False, **common)  # full DICOM grid
    if parts & {"a", "c"}:
        dm.setup("fit")
        test_eval.setup("test")
    results["data_seconds"] = round(time.perf_counter() - t, 1)
    print(f"data ready in {results['data_seconds']} s", flush=True)

    def train_seg(name: str, steps: int, pretrained: str | None = None) -> tuple[MedicalSegmentationTask, dict]:
        torch.manual_seed(args.seed)
        task = seg_task(args, len(names) + 1, names, model_kwargs, roi, args.lr, steps, pretrained)
        info = train_loop(task, loader(dm.datasets["train"], steps, 1, workers), steps, device, max(1, steps // 8),
                          name)
        info["loaded_encoder_tensors"] = len(task.loaded_keys)
        for mode in args.eval_padding[1:]:
            task.hparams.padding_mode = mode
            info[f"dice_test_{mode}"], _ = evaluate(task, test_eval.datasets["test"], device, names)
        task.hparams.padding_mode = args.eval_padding[0]
        info["dice_test"], items = evaluate(task, test_eval.datasets["test"], device, names)
        return task, info | {"_items": items}

    def save() -> None:  # after every result, so that a run cut short keeps what it measured
        results["total_seconds"] = round(time.perf_counter() - t_start, 1)
        (out / "results.json").write_text(json.dumps(results, indent=2, default=str))

    if "b" in parts:  # the short one first
        run_b(args, results, model_kwargs, quick, steps_2d, workers, device, out)
        save()
    if "a" in parts:
        run_a(args, results, test_eval, train_seg, names, seg_steps, out, save)
    if "c" in parts:
        run_c(args, results, train_seg, model_kwargs, roi, pixdim, seg_steps, pre_steps, workers, quick, device, out,
              save)
    save()
    print_table(results, names)
    print(f"total {results['total_seconds']} s; JSON: {out / 'results.json'}")
    return 0


def run_a(args, results, test_eval, train_seg, names, seg_steps, out, save) -> None:
    # ---- (a) scratch ---------------------------------------------------------------------------------------
    print("(a) HyMamba from scratch on example_ct, test on the DICOM series", flush=True)
    scratch, info = train_seg("scratch", seg_steps)
    item, pred = info.pop("_items")[0]
    info["dice_test_nifti_roundtrip"] = nifti_roundtrip_dice(item, pred, test_eval.datasets["test"], out, names,
                                                             args.data_root / TS / "example_seg_dicom.nii.gz")
    info["parameters"] = sum(p.numel() for p in scratch.model.parameters())
    results["a_scratch"] = info
    save()
    print(f"  test Dice (resampled grid) {info['dice_test']}\n  test Dice (NIfTI on DICOM grid) "
          f"{info['dice_test_nifti_roundtrip']}", flush=True)
    if args.save_ckpt:
        torch.save({k: v.half() for k, v in scratch.model.state_dict().items()}, out / "hymamba_ct_scratch_fp16.pt")
    scratch.cpu()


def run_c(args, results, train_seg, model_kwargs, roi, pixdim, seg_steps, pre_steps, workers, quick, device, out,
          save) -> None:
    # ---- (c) MambaMIM pre-training on the unlabelled CTs, then fine-tuning ---------------------------------
    print("(c) MambaMIM pre-training on unlabelled CT volumes", flush=True)
    pre_dm = MedicalDataModule(train=[{"image": str(args.data_root / f)} for f in UNLABELLED], unlabelled=True, pixdim=pixdim,
                               intensity_range=(-175.0, 250.0), roi_size=roi, num_samples=args.batch, cache="memory")
    pre_dm.setup("fit")
    torch.manual_seed(args.seed)
    mim_kwargs = dict(model_kwargs, img_size=roi[0], decoder_width=64 if quick else 384, mask_ratio=0.75)
    pre = MedicalPretrainTask(mim_kwargs, lr=1.5e-3 if not quick else 1e-3, warmup_steps=max(1, pre_steps // 10),
                              weight_decay=0.04, weight_decay_end=0.2, grad_clip=5.0)
    pre_info = train_loop(pre, loader(pre_dm.datasets["train"], pre_steps, 1, workers), pre_steps, device,
                          max(1, pre_steps // 6), "mambamim")
    ckpt = out / "mambamim_pretrain.pt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in pre.model.state_dict().items()}}, ckpt)
    pre.cpu()
    results["c_pretrain"] = pre_info
    _, ft = train_seg("finetune", seg_steps - pre_steps, pretrained=str(ckpt))
    ft.pop("_items")
    results["c_pretrained_same_total_budget"] = ft
    save()
    if args.full_finetune:
        _, ft_full = train_seg("finetune_full", seg_steps, pretrained=str(ckpt))
        ft_full.pop("_items")
        results["c_pretrained_plus_full_finetune"] = ft_full
    if not args.save_ckpt:
        ckpt.unlink()


def run_b(args, results, model_kwargs, quick, steps_2d, workers, device, out) -> None:
    # ---- (b) 2-D membrane ----------------------------------------------------------------------------------
    print("(b) HyMamba spatial_dims=2 on ISBI-2012 membrane", flush=True)
    mem = args.data_root / "medical2d" / "membrane"
    pairs = [{"image": str(mem / "image" / f"{i}.png"), "label": str(mem / "label" / f"{i}.png")} for i in range(30)]
    roi2 = (128, 128) if quick else (256, 256)
    dm2 = MedicalDataModule(train=pairs[:24], test=pairs[24:26] if quick else pairs[24:], spatial_dims=2, labels=[0],
                            pixdim=None,
                            intensity_range=(0.0, 255.0), roi_size=roi2, num_samples=4, crop_foreground=False,
                            cache="memory")
    dm2.setup("fit")
    dm2.setup("test")
    torch.manual_seed(args.seed)
    kw2 = dict(model_kwargs, img_size=roi2) if quick else dict(img_size=roi2, channels=(16, 32, 64, 128, 192),
                                                                 depths=(1, 1, 1, 1, 1), exp_r=(2, 2, 2, 2, 2), depth=2)
    task2 = seg_task(args, 2, ["membrane"], kw2, roi2, args.lr, steps_2d, spatial_dims=2)
    info2 = train_loop(task2, loader(dm2.datasets["train"], steps_2d, 2, workers), steps_2d, device,
                       max(1, steps_2d // 6), "membrane")
    info2["dice_test"], _ = evaluate(task2, dm2.datasets["test"], device, ["membrane"])
    info2["parameters"] = sum(p.numel() for p in task2.model.parameters())
    results["b_membrane_2d"] = info2
    if args.save_ckpt:
        torch.save({k: v.half() for k, v in task2.model.state_dict().items()}, out / "hymamba_membrane_fp16.pt")


def print_table(results: dict, names: list[str]) -> None:
    print("\n== medical real-data results (" + results["device"] + ") ==")
    rows = [(label, results[key]) for label, key in (
        ("(a) scratch", "a_scratch"), ("(c) pretrain+finetune (same budget)", "c_pretrained_same_total_budget"),
        ("(c) pretrain+full finetune", "c_pretrained_plus_full_finetune")) if key in results]
    print(f"{'run':40s} {'steps':>6s} {'sec':>6s} {'mean Dice':>9s}  " + " ".join(f"{n[:8]:>8s}" for n in names))
    for label, r in rows:
        d = r["dice_test"]
        print(f"{label:40s} {r['steps']:6d} {r['seconds']:6.1f} {d['mean']:9.4f}  "
              + " ".join(f"{d[n]:8.3f}" if not math.isnan(d[n]) else f"{'nan':>8s}" for n in names))
        for mode in results["eval_padding"][1:]:
            print(f"{'  ... padding ' + mode:40s} {'':6s} {'':6s} {r['dice_test_' + mode]['mean']:9.4f}")
    if "a_scratch" in results:
        rt = results["a_scratch"]["dice_test_nifti_roundtrip"]
        print(f"{'(a) scratch, NIfTI written on DICOM grid':40s} {'':6s} {'':6s} {rt['mean']:9.4f}")
    if "b_membrane_2d" in results:
        b = results["b_membrane_2d"]
        print(f"{'(b) membrane 2-D':40s} {b['steps']:6d} {b['seconds']:6.1f} {b['dice_test']['mean']:9.4f}")
    if "c_pretrain" in results:
        c = results["c_pretrain"]
        print(f"(c) MambaMIM pre-training: {c['steps']} steps, {c['seconds']} s, loss {c['first_loss']:.3f} "
              f"-> {c['final_loss']:.3f}")


if __name__ == "__main__":
    raise SystemExit(main())

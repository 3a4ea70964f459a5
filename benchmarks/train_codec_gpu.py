"""Train the CMamba codec and CompressAI's mbt2018_mean baseline on one GPU in one short run.

One process per model, all at once on the same GPU, for the same wall-clock training time and
the same data (../shared/data/images/train + extra, random 256 crops with flips, batch 16):

* ours: one variable-rate CMamba ("small": N 64, M 160) over the six MSE presets (one quality
  drawn per crop), or with ``--fixed-rate Q ...`` one fixed-rate model per preset Q (``--latent-channels``
  overrides M), Adam ``--lr-ours`` (default ``--lr``, 1e-4) with the last ``--decay-fraction`` of the run at
  a tenth of it, aux Adam 1e-3, grad clip 1;
* baseline: ``compressai.zoo.mbt2018_mean(quality=q)`` for each ``--baseline-qualities`` (fixed
  rate, lambda of the same preset), same optimisers and schedule.

Images are decoded once and kept on the GPU; crops are cut there (no data-loader stall). Each
model ends by writing one small file (float16 weights, no optimiser state -- Adam restarts on
resume -- so that all of them come back from a remote run): ``<out>/cmamba-<config>-mse.pt`` (the
exported codec format of ``ssm_apps.codecs.pretrained``, ready to ship) and
``<out>/mbt2018_mean-q<q>.pt.z`` (zlib-compressed). ``--resume DIR`` continues from the files of a
previous run in DIR (the full float32 checkpoints ``<name>.resume.pt`` with both Adam states when they are
there, written atomically at the end of each run; else the small files). Kodak is then evaluated (``--eval-images 0``: not): every image at every quality with the rate
estimated from the likelihoods and, until ``--deadline`` seconds after the start, with real
bitstreams (file bpp, PSNR and MS-SSIM of the decoded image, bit-exact check, encode/decode time on
the GPU). Data: ``runs/codec_data`` (``benchmarks/pack_codec_data.py``, lossless) when it exists,
else ../shared/data/images. ``<out>/train_codec.json`` holds everything; ``<out>/cmamba-<config>-mse.json``
the figures that ship beside the weights.

    python benchmarks/train_codec_gpu.py --out runs/codec_r1                       # ~8 min on an H200
    python benchmarks/train_codec_gpu.py --resume runs/codec_r1 --out runs/codec_r2
    python benchmarks/train_codec_gpu.py --quick --device cpu --out runs/codec_quick  # smoke test
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ssm_apps.codecs.cmamba import (  # noqa: E402
    CONFIGS,
    MSE_LAMBDAS,
    create_cmamba,
    deterministic_inference,
)
from ssm_apps.codecs.data import image_files, load_rgb  # noqa: E402
from ssm_apps.codecs.losses import RateDistortionLoss  # noqa: E402
from ssm_apps.codecs.metrics import (  # noqa: E402
    MS_SSIM_MIN_SIDE,
    bpp_from_likelihoods,
    ms_ssim,
    psnr,
)
from ssm_apps.codecs.task import sample_qualities, split_parameters  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "images"
PACKED = REPO / "runs" / "codec_data"  # benchmarks/pack_codec_data.py: the same pixels, small enough to travel
DATA = PACKED if all((PACKED / f).is_dir() for f in ("train", "extra", "kodak")) else SHARED


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "codec_train")
    p.add_argument("--resume", type=Path, help="folder of a previous run's model files")
    p.add_argument("--device", default="cuda")
    p.add_argument("--train-seconds", type=float, default=300.0, help="training wall time per model")
    p.add_argument("--config", choices=sorted(CONFIGS), help="CMamba configuration (default small; --quick: tiny)")
    p.add_argument("--fixed-rate", type=int, nargs="+", metavar="Q",
                   help="train one fixed-rate CMamba per MSE preset Q (1..6) instead of the variable-rate model")
    p.add_argument("--latent-channels", type=int, help="override M (channels of y) of the CMamba configuration")
    p.add_argument("--baseline-qualities", type=int, nargs="*", default=[1, 2, 3, 4])
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lr-ours", type=float, help="main lr of our model only (default: --lr, as the baseline)")
    p.add_argument("--aux-lr", type=float, default=1e-3)
    p.add_argument("--decay-fraction", type=float, default=0.15, help="last fraction of the run at lr / 10")
    p.add_argument("--train-dirs", type=Path, nargs="+", default=[DATA / "train", DATA / "extra"])
    p.add_argument("--kodak", type=Path, default=DATA / "kodak")
    p.add_argument("--eval-images", type=int, default=24)
    p.add_argument("--coded-images", type=int, default=24, help="Kodak images also coded to real bitstreams")
    p.add_argument(
        "--deadline",
        type=float,
        default=470.0,
        help="seconds from the start after which no further image is coded (the run stays inside 8 min)",
    )
    p.add_argument("--eval-crop", type=int, default=0, help="centre-crop Kodak to this side (0: full size)")
    p.add_argument("--sequential", action="store_true", help="train the models one after the other in-process")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--quick", action="store_true", help="CPU smoke test: tiny model, seconds of training, 2 small images"
    )
    args = p.parse_args(argv)
    args.config = args.config or ("tiny" if args.quick else "small")
    if args.quick:
        args.train_seconds, args.batch_size, args.crop = min(args.train_seconds, 8.0), 2, 64
        args.eval_images, args.coded_images, args.eval_crop, args.sequential = 2, 1, 128, True
        args.baseline_qualities = args.baseline_qualities[:1]
    return args


# ------------------------------------------------------------------------------------- data
def load_train_images(dirs: list[Path], crop: int, device: torch.device) -> list[torch.Tensor]:
    images = []
    for path in image_files(dirs):
        image = (load_rgb(path) * 255).round().to(torch.uint8)
        if min(image.shape[-2:]) >= crop:
            images.append(image.to(device))
    if not images:
        raise ValueError(f"no training image of at least {crop}x{crop} under {dirs}")
    return images


def sample_batch(images: list[torch.Tensor], batch: int, crop: int, gen: torch.Generator) -> torch.Tensor:
    crops = []
    for _ in range(batch):
        image = images[int(torch.randint(len(images), (1,), generator=gen))]
        _, h, w = image.shape
        top = int(torch.randint(h - crop + 1, (1,), generator=gen))
        left = int(torch.randint(w - crop + 1, (1,), generator=gen))
        c = image[:, top : top + crop, left : left + crop]
        flips = torch.rand(2, generator=gen)
        if flips[0] < 0.5:
            c = c.flip(-1)
        if flips[1] < 0.5:
            c = c.flip(-2)
        crops.append(c)
    return torch.stack(crops).float().div_(255)


def load_eval_images(folder: Path, limit: int, crop: int) -> list[tuple[str, torch.Tensor]]:
    out = []
    for path in image_files([folder])[:limit]:
        image = load_rgb(path)
        if crop:
            _, h, w = image.shape
            image = image[:, (h - crop) // 2 : (h - crop) // 2 + crop, (w - crop) // 2 : (w - crop) // 2 + crop]
        out.append((path.name, image))
    return out


# ------------------------------------------------------------------------------------ models
def build(job: dict, args: argparse.Namespace):
    if job["arch"] == "cmamba":
        overrides = {"M": args.latent_channels} if args.latent_channels else {}
        if "quality" in job:  # fixed rate at one preset
            overrides.update(num_qualities=1, lambdas=[MSE_LAMBDAS[job["quality"] - 1]], qualities=[job["quality"]])
        else:
            overrides["lambdas"] = list(MSE_LAMBDAS[-CONFIGS[args.config].num_qualities :])
        return create_cmamba(args.config, **overrides)
    from compressai.zoo import mbt2018_mean

    return mbt2018_mean(quality=job["quality"], pretrained=False)


def model_lambdas(model) -> list[float]:
    """The MSE preset lambda of each quality a CMamba serves (variable-rate: the last presets, as it was built)."""
    if model.num_qualities == 1:
        return [MSE_LAMBDAS[model.qualities[0] - 1]]
    return list(MSE_LAMBDAS[-model.num_qualities :])


def job_file(job: dict) -> str:
    return f"{job['name']}.pt" if job["arch"] == "cmamba" else f"mbt2018_mean-q{job['quality']}.pt.z"


def save_baseline(model, path: Path, job: dict, state: dict) -> None:
    sd = {
        k: v.half() if v.is_floating_point() and "entropy" not in k and "gaussian" not in k else v
        for k, v in model.state_dict().items()
    }
    buf = io.BytesIO()
    torch.save({"arch": "mbt2018_mean", "quality": job["quality"], "state_dict": sd, "train_state": state}, buf)
    path.write_bytes(zlib.compress(buf.getvalue(), 6))


def load_baseline_file(path: Path) -> dict:
    return torch.load(io.BytesIO(zlib.decompress(path.read_bytes())), map_location="cpu", weights_only=False)


def resume_file(job: dict) -> str:
    return f"{job['name']}.resume.pt"


def resume_state(model, job: dict, args: argparse.Namespace) -> tuple[dict, dict | None]:
    """Load the previous run's weights into ``model``; returns its train_state (steps, seconds) and the
    optimiser states. The full float32 checkpoint (``<name>.resume.pt``: weights, both Adam states) is
    preferred; without it the small exported file is used (float16 weights, Adam restarts)."""
    if args.resume is None:
        return {"steps": 0, "train_seconds": 0.0, "runs": 0}, None
    full = args.resume / resume_file(job)
    if full.is_file():
        payload = torch.load(full, map_location="cpu", weights_only=False)
        model.load_state_dict(payload["state_dict"])
        return dict(payload["train_state"]), payload["optimizers"]
    path = args.resume / job_file(job)
    if not path.is_file():
        raise FileNotFoundError(f"--resume: {path} is missing")
    payload = (
        torch.load(path, map_location="cpu", weights_only=False)
        if job["arch"] == "cmamba"
        else load_baseline_file(path)
    )
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()})
    return dict(payload.get("train_state", {"steps": 0, "train_seconds": 0.0, "runs": 0})), None


def save_resume(path: Path, model, optimizer, aux_optimizer, state: dict) -> None:
    """Full float32 checkpoint for the next run, written atomically (a cut run keeps the previous one)."""
    from ssm_apps.training.checkpoint_io import AtomicCheckpointIO

    payload = {"state_dict": model.state_dict(), "train_state": state,
               "optimizers": {"main": optimizer.state_dict(), "aux": aux_optimizer.state_dict()}}
    AtomicCheckpointIO().save_checkpoint(payload, path)


# ---------------------------------------------------------------------------------- training
def train(job: dict, args: argparse.Namespace, device: torch.device) -> dict:
    torch.manual_seed(args.seed + job.get("quality", 0))
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    model = build(job, args)
    state, optimizer_states = resume_state(model, job, args)
    model = model.to(device).train()
    images = load_train_images(args.train_dirs, args.crop, device)
    main_params, aux_params = split_parameters(model)
    is_ours = job["arch"] == "cmamba"
    base_lr = args.lr_ours if is_ours and args.lr_ours else args.lr
    optimizer = torch.optim.Adam(main_params, lr=base_lr)
    aux_optimizer = torch.optim.Adam(aux_params, lr=args.aux_lr)
    if optimizer_states is not None:
        optimizer.load_state_dict(optimizer_states["main"])
        aux_optimizer.load_state_dict(optimizer_states["aux"])
    criterion = RateDistortionLoss("mse")
    # crop positions on the host (plain ints, no device sync); flips and qualities follow from them
    gen = torch.Generator().manual_seed(args.seed * 1000 + job.get("quality", 0) + state["steps"])
    qualities = list(model.qualities) if is_ours else None
    lambdas = torch.tensor(model_lambdas(model), device=device) if is_ours else None
    decay_at = args.train_seconds * (1 - args.decay_fraction)
    steps, losses, start = 0, [], time.perf_counter()
    while (elapsed := time.perf_counter() - start) < args.train_seconds:
        lr = base_lr * (0.1 if elapsed >= decay_at else 1.0)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x = sample_batch(images, args.batch_size, args.crop, gen)
        if is_ours:
            quality = sample_qualities(qualities, x.shape[0], device)
            out, lmbda = model(x, quality), lambdas[model.quality_index(quality, x.shape[0], device)]
        else:
            out, lmbda = model(x), MSE_LAMBDAS[job["quality"] - 1]
        loss = criterion(out, x, lmbda)
        optimizer.zero_grad(set_to_none=True)
        loss["loss"].backward()
        torch.nn.utils.clip_grad_norm_(main_params, 1.0)
        optimizer.step()
        aux_loss = model.aux_loss()
        aux_optimizer.zero_grad(set_to_none=True)
        aux_loss.backward()
        aux_optimizer.step()
        steps += 1
        if steps % 50 == 0:
            if not math.isfinite(float(loss["loss"])):
                raise FloatingPointError(f"{job['name']}: non-finite loss at step {state['steps'] + steps}")
            losses.append(
                {
                    "step": state["steps"] + steps,
                    "loss": float(loss["loss"]),
                    "bpp": float(loss["bpp_loss"]),
                    "mse": float(loss["mse_loss"]),
                    "aux": float(aux_loss),
                }
            )
    train_seconds = time.perf_counter() - start
    state = {
        "steps": state["steps"] + steps,
        "train_seconds": state["train_seconds"] + train_seconds,
        "runs": state.get("runs", 0) + 1,
    }
    save_resume(args.out / resume_file(job), model, optimizer, aux_optimizer, state)
    model.eval()
    path = args.out / job_file(job)
    if is_ours:
        from ssm_apps.codecs.pretrained import export_weights

        config = {**CONFIGS[args.config].__dict__, "M": model.M, "num_qualities": model.num_qualities,
                  "lambdas": model_lambdas(model), "qualities": list(model.qualities)}
        config["depths"] = list(config["depths"])
        payload = export_weights(model, path, job["name"], config, "mse", config["lambdas"])
        payload["train_state"] = state
        torch.save(payload, path)
        model.codec_id = job["name"]
    else:
        model.update(force=True, update_quantiles=True)
        save_baseline(model, path, job, state)
    return {
        "model": model,
        "steps_this_run": steps,
        "train_seconds_this_run": train_seconds,
        "train_state": state,
        "lr": base_lr,
        "loss_log": losses,
        "file": str(path),
        "file_bytes": path.stat().st_size,
        "params": sum(p.numel() for p in model.parameters()),
    }


# -------------------------------------------------------------------------------- evaluation
def evaluate(model, job: dict, args: argparse.Namespace, device: torch.device) -> dict:
    from ssm_apps.codecs.codec import decompress, encode
    from ssm_apps.codecs.container import BitstreamError

    is_ours = job["arch"] == "cmamba"
    qualities = list(model.qualities) if is_ours else [job["quality"]]
    images = load_eval_images(args.kodak, args.eval_images, args.eval_crop)
    rows = []
    for index, (name, image) in enumerate(images):
        _, h, w = image.shape
        x = image[None].to(device)
        pad = (0, (-w) % 64, 0, (-h) % 64)
        xp = torch.nn.functional.pad(x, pad, mode="replicate")
        code = index < args.coded_images and time.time() - args.started < args.deadline  # whole images only
        for q in qualities:
            row = {"image": name, "quality": q}
            with deterministic_inference(model):
                out = model(xp, q) if is_ours else model(xp)
                x_hat = out["x_hat"].clamp(0, 1)[..., :h, :w]
                row["bpp_est"] = float(bpp_from_likelihoods(out["likelihoods"], h * w))
                row["psnr_est"] = float(psnr((x_hat * 255).round() / 255, x))
                if code:
                    uint8 = (image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
                    t0 = time.perf_counter()
                    if is_ours:
                        result = encode(model, uint8, q)
                        t1 = time.perf_counter()
                        try:
                            decoded = decompress(result.data, model)
                            row["bit_exact"] = bool(np.array_equal(decoded, result.reconstruction))
                        except BitstreamError:  # the decoder drifted from the encoder: reported, run fails
                            decoded, row["bit_exact"] = result.reconstruction, False
                        nbytes = len(result.data)
                    else:
                        enc = model.compress(xp)
                        t1 = time.perf_counter()
                        dec = model.decompress(enc["strings"], enc["shape"])
                        decoded = (
                            (dec["x_hat"].clamp(0, 1)[0, :, :h, :w] * 255)
                            .round()
                            .to(torch.uint8)
                            .permute(1, 2, 0)
                            .cpu()
                            .numpy()
                        )
                        nbytes = sum(len(s[0]) for s in enc["strings"]) + 8  # + a minimal size/shape header
                    t2 = time.perf_counter()
                    recon = torch.from_numpy(decoded).permute(2, 0, 1)[None].float().div(255)
                    row.update(
                        {
                            "bytes": nbytes,
                            "bpp": 8 * nbytes / (h * w),
                            "psnr": float(psnr(recon, x.cpu())),
                            "encode_s": t1 - t0,
                            "decode_s": t2 - t1,
                        }
                    )
                    if min(h, w) >= MS_SSIM_MIN_SIDE:
                        row["ms_ssim"] = float(ms_ssim(recon, x.cpu()))
            rows.append(row)
    averages = []
    for q in qualities:
        sel = [r for r in rows if r["quality"] == q]
        avg = {"quality": q, "lambda": MSE_LAMBDAS[q - 1]}
        for key in ("bpp_est", "psnr_est", "bpp", "psnr", "ms_ssim", "encode_s", "decode_s"):
            vals = [r[key] for r in sel if key in r]
            if vals:
                avg[key] = float(np.mean(vals))
        coded = [r for r in sel if "bpp" in r]
        if coded:
            avg["file_vs_estimate"] = float(np.mean([r["bpp"] / r["bpp_est"] for r in coded]))
        if is_ours and coded:
            avg["bit_exact"] = all(r["bit_exact"] for r in coded)
        averages.append(avg)
    coded = len({r["image"] for r in rows if "bpp" in r})
    return {"per_image": rows, "averages": averages, "eval_images": len(images), "coded_images": coded}


def run_job(job: dict, args: argparse.Namespace) -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2 if args.device.startswith("cuda") else 1)
    device = torch.device(args.device)
    t0 = time.perf_counter()
    try:
        trained = train(job, args, device)
        model = trained.pop("model")
        kodak = evaluate(model, job, args, device) if args.eval_images else None
        result = {**job, **trained, "kodak": kodak, "wall_s": time.perf_counter() - t0}
    except Exception as err:  # noqa: BLE001  (reported in the JSON and the table; the run exits non-zero)
        result = {**job, "error": f"{type(err).__name__}: {err}", "wall_s": time.perf_counter() - t0}
    (args.out / f"job_{job['name']}.json").write_text(json.dumps(result, indent=1))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.started = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ours_id = f"cmamba-{args.config}-mse"
    ours = ([{"name": f"{ours_id}-q{q}", "arch": "cmamba", "quality": q} for q in args.fixed_rate] if args.fixed_rate
            else [{"name": ours_id, "arch": "cmamba"}])
    jobs = ours + [
        {"name": f"mbt2018_mean-q{q}", "arch": "mbt2018_mean", "quality": q} for q in args.baseline_qualities
    ]
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    if args.sequential or len(jobs) == 1:
        for job in jobs:
            run_job(job, args)
    else:
        ctx = torch.multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=run_job, args=(job, args)) for job in jobs]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
    results = []
    for job in jobs:
        path = args.out / f"job_{job['name']}.json"
        results.append(
            json.loads(path.read_text()) if path.is_file() else {**job, "error": "the process wrote no result"}
        )
        path.unlink(missing_ok=True)
    summary = {
        "device": device_name,
        "torch": torch.__version__,
        "args": {k: str(v) for k, v in vars(args).items()},
        "wall_s": time.perf_counter() - t0,
        "jobs": results,
    }
    (args.out / "train_codec.json").write_text(json.dumps(summary, indent=1))
    for ours in (r for r in results if r["arch"] == "cmamba" and r.get("kodak")):
        shipped = {
            "model_id": ours["name"],
            "device": device_name,
            "train_state": ours["train_state"],
            "kodak": ours["kodak"]["averages"],
            "per_image": ours["kodak"]["per_image"],
            "eval_crop": args.eval_crop,
            "eval_images": ours["kodak"]["eval_images"],
        }
        (args.out / f"{ours['name']}.json").write_text(json.dumps(shipped, indent=1))
    print(f"\n== codec training on {device_name}: {summary['wall_s']:.0f} s wall ==")
    print(
        f"{'model':<20} {'steps':>7} {'q':>3} {'bpp est':>8} {'PSNR est':>9} {'bpp file':>9} {'PSNR':>7} {'exact':>6}"
    )
    failed = False
    for r in results:
        if "error" in r:
            failed = True
            print(f"{r['name']:<20} ERROR {r['error']}")
            continue
        for a in r["kodak"]["averages"] if r["kodak"] else [{"quality": "-", "bpp_est": math.nan, "psnr_est": math.nan}]:
            print(
                f"{r['name']:<20} {r['train_state']['steps']:>7} {a['quality']:>3} "
                f"{a['bpp_est']:>8.4f} {a['psnr_est']:>9.3f} "
                f"{a.get('bpp', float('nan')):>9.4f} {a.get('psnr', float('nan')):>7.3f} {a.get('bit_exact', '-')!s:>6}"
            )
            failed |= a.get("bit_exact") is False
    print(f"results: {args.out / 'train_codec.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

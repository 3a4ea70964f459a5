"""Rate-distortion on Kodak: CMamba (ours), CompressAI's mbt2018_mean, JPEG and WebP (Pillow).

Every rate is measured on real files: ours the whole ``.ssmc`` file (header included), the baseline
its two rANS strings plus 8 bytes (image size and latent shape, what a minimal container needs),
JPEG/WebP the bytes Pillow writes (default settings, quality sweeps). PSNR on 8-bit RGB, MS-SSIM
(torchmetrics, 5 scales) on the decoded 8-bit images. Bjontegaard delta rates (PSNR and MS-SSIM in
dB, ``-10 log10(1 - MS-SSIM)``) of ours vs JPEG, WebP and the baseline, and of WebP vs JPEG.
Encode/decode time per image of ours and the baseline on the CPU and, when there is one, the GPU.
Writes ``<out>/codec_rd.json`` and ``<out>/codec_rd.png`` and prints a table.

    python benchmarks/bench_codec_rd.py --weights runs/codec_r1/cmamba-small-mse.pt --baseline-dir runs/codec_r1
    python benchmarks/bench_codec_rd.py --weights NEW.pt --baseline-rows benchmarks/results/codec_rd/codec_rd.json  # baseline rows of an earlier run
    python benchmarks/bench_codec_rd.py --train-json runs/codec_r1/train_codec.json \
        --weights runs/codec_r1/cmamba-small-mse.pt --baseline-dir runs/codec_r1  # GPU rows from the run, CPU times
    python benchmarks/bench_codec_rd.py --quick --device cpu          # JPEG/WebP + any shipped weights, 2 crops
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ssm_apps.codecs.data import image_files  # noqa: E402
from ssm_apps.codecs.metrics import MS_SSIM_MIN_SIDE, bd_rate, ms_ssim, psnr  # noqa: E402

KODAK = REPO.parent / "shared" / "data" / "images" / "kodak"
JPEG_QUALITIES = [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]
WEBP_QUALITIES = [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", type=Path, help="our exported weights (.pt; default: the shipped default model if any)")
    p.add_argument("--baseline-dir", type=Path, help="folder with mbt2018_mean-q<q>.pt.z from train_codec_gpu.py")
    p.add_argument(
        "--baseline-rows",
        type=Path,
        help="codec_rd.json of an earlier run of this script: the baseline's per-image rows and timings are "
        "taken from it (same images) instead of coded again",
    )
    p.add_argument("--kodak", type=Path, default=KODAK)
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--crop", type=int, default=0, help="centre crop side (0: full images)")
    p.add_argument("--qualities", type=int, nargs="*", help="our qualities (default: all)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--time-images", type=int, default=2, help="images timed on each device")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "codec_rd")
    p.add_argument(
        "--train-json",
        type=Path,
        help="train_codec.json of train_codec_gpu.py: ours and the baseline's real-file rows (coded on "
        "that run's GPU) are taken from it instead of coded again; JPEG/WebP run on the same images",
    )
    p.add_argument("--quick", action="store_true", help="2 centre crops of 256, 5 JPEG/WebP qualities")
    args = p.parse_args(argv)
    if args.quick:
        args.images, args.crop, args.time_images = 2, 256, 1
    return args


def load_images(args) -> list[tuple[str, np.ndarray]]:
    out = []
    for path in image_files([args.kodak])[: args.images]:
        image = np.asarray(Image.open(path).convert("RGB"))
        if args.crop:
            h, w = image.shape[:2]
            top, left = (h - args.crop) // 2, (w - args.crop) // 2
            image = image[top : top + args.crop, left : left + args.crop]
        out.append((path.name, np.ascontiguousarray(image)))
    return out


def quality_metrics(decoded: np.ndarray, original: np.ndarray) -> dict:
    x = torch.tensor(original).permute(2, 0, 1)[None].float() / 255
    y = torch.tensor(decoded).permute(2, 0, 1)[None].float() / 255
    row = {"psnr": float(psnr(y, x))}
    if min(original.shape[:2]) >= MS_SSIM_MIN_SIDE:
        row["ms_ssim"] = float(ms_ssim(y, x))
    return row


def pillow_codec(images, fmt: str, qualities: list[int]) -> list[dict]:
    rows = []
    for name, image in images:
        for q in qualities:
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, format=fmt, quality=q)
            data = buf.getvalue()
            decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            rows.append(
                {
                    "image": name,
                    "quality": q,
                    "bytes": len(data),
                    "bpp": 8 * len(data) / (image.shape[0] * image.shape[1]),
                    **quality_metrics(decoded, image),
                }
            )
    return rows


def ours_codec(model, images, qualities, device: str, timed: int) -> tuple[list[dict], dict]:
    from ssm_apps.codecs.codec import decompress, encode
    from ssm_apps.codecs.container import BitstreamError

    rows, times = [], {"encode_s": [], "decode_s": []}
    for index, (name, image) in enumerate(images):
        for q in qualities:
            sync(device)
            t0 = time.perf_counter()
            result = encode(model, image, q)
            sync(device)
            t1 = time.perf_counter()
            try:
                decoded = decompress(result.data, model)
                exact = bool(np.array_equal(decoded, result.reconstruction))
            except BitstreamError:  # the decoder drifted from the encoder: reported, the run fails
                decoded, exact = result.reconstruction, False
            sync(device)
            t2 = time.perf_counter()
            rows.append(
                {
                    "image": name,
                    "quality": q,
                    "bytes": len(result.data),
                    "bpp": result.bpp,
                    "bit_exact": exact,
                    **quality_metrics(decoded, image),
                    "encode_s": t1 - t0,
                    "decode_s": t2 - t1,
                }
            )
            if index < timed:
                times["encode_s"].append(t1 - t0)
                times["decode_s"].append(t2 - t1)
    return rows, times


def baseline_codec(models: dict, images, device: str, timed: int) -> tuple[list[dict], dict]:
    from ssm_apps.codecs.cmamba import deterministic_inference

    rows, times = [], {"encode_s": [], "decode_s": []}
    for index, (name, image) in enumerate(images):
        h, w = image.shape[:2]
        x = torch.tensor(image).permute(2, 0, 1)[None].float().div(255).to(device)
        x = torch.nn.functional.pad(x, (0, (-w) % 64, 0, (-h) % 64), mode="replicate")
        for q, model in models.items():
            with deterministic_inference(model):
                sync(device)
                t0 = time.perf_counter()
                enc = model.compress(x)
                sync(device)
                t1 = time.perf_counter()
                x_hat = model.decompress(enc["strings"], enc["shape"])["x_hat"]
                decoded = (x_hat.clamp(0, 1)[0, :, :h, :w] * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
                sync(device)
                t2 = time.perf_counter()
            nbytes = sum(len(s[0]) for s in enc["strings"]) + 8
            rows.append(
                {
                    "image": name,
                    "quality": q,
                    "bytes": nbytes,
                    "bpp": 8 * nbytes / (h * w),
                    **quality_metrics(decoded, image),
                    "encode_s": t1 - t0,
                    "decode_s": t2 - t1,
                }
            )
            if index < timed:
                times["encode_s"].append(t1 - t0)
                times["decode_s"].append(t2 - t1)
    return rows, times


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def load_baselines(folder: Path, device: str) -> dict:
    from compressai.zoo import mbt2018_mean

    sys.path.insert(0, str(REPO / "benchmarks"))
    from train_codec_gpu import load_baseline_file

    models = {}
    for path in sorted(folder.glob("mbt2018_mean-q*.pt.z")):
        payload = load_baseline_file(path)
        model = mbt2018_mean(quality=payload["quality"], pretrained=False)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()})
        models[payload["quality"]] = model.to(device).eval()
    if not models:
        raise FileNotFoundError(f"--baseline-dir {folder}: no mbt2018_mean-q*.pt.z files")
    return models


def curve(rows: list[dict]) -> dict:
    """Average over images per quality: {"quality": [...], "bpp": [...], "psnr": [...], "ms_ssim": [...]}."""
    qualities = sorted({r["quality"] for r in rows})
    out = {"quality": qualities}
    for key in ("bpp", "psnr", "ms_ssim", "encode_s", "decode_s"):
        vals = [[r[key] for r in rows if r["quality"] == q and key in r] for q in qualities]
        if all(vals):
            out[key] = [float(np.mean(v)) for v in vals]
    return out


def ms_ssim_db(values: list[float]) -> list[float]:
    return [-10 * math.log10(max(1 - v, 1e-10)) for v in values]


def bd_rates(curves: dict, test: str, anchors: list[str]) -> dict:
    out = {}
    for anchor in anchors:
        if anchor not in curves or test not in curves:
            continue
        a, b = curves[anchor], curves[test]
        for metric in ("psnr", "ms_ssim"):
            if metric not in a or metric not in b:
                continue
            ma, mb = (a[metric], b[metric]) if metric == "psnr" else (ms_ssim_db(a[metric]), ms_ssim_db(b[metric]))
            try:
                out[f"{test}_vs_{anchor}_{metric}"] = bd_rate(a["bpp"], ma, b["bpp"], mb)
            except ValueError as err:
                out[f"{test}_vs_{anchor}_{metric}"] = f"n/a ({err})"
    return out


def plot(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, c in curves.items():
        axes[0].plot(c["bpp"], c["psnr"], "o-", ms=3, label=name)
        if "ms_ssim" in c:
            axes[1].plot(c["bpp"], ms_ssim_db(c["ms_ssim"]), "o-", ms=3, label=name)
    axes[0].set(xlabel="bpp (real files)", ylabel="PSNR RGB (dB)", title="Kodak")
    axes[1].set(xlabel="bpp (real files)", ylabel="MS-SSIM (dB)", title="Kodak")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.set_xlim(0, 1.6)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    args.out.mkdir(parents=True, exist_ok=True)
    trained = json.loads(args.train_json.read_text()) if args.train_json else None
    if trained is not None:
        args.crop = int(trained["args"].get("eval_crop", 0))  # the images the training run coded
    images = load_images(args)
    if trained is not None:
        coded = {r["image"] for job in trained["jobs"] for r in job.get("kodak", {}).get("per_image", []) if "bpp" in r}
        images = [(name, image) for name, image in images if name in coded]
    jpeg_q = JPEG_QUALITIES[::2] if args.quick else JPEG_QUALITIES
    webp_q = WEBP_QUALITIES[::2] if args.quick else WEBP_QUALITIES
    rows = {"JPEG": pillow_codec(images, "JPEG", jpeg_q), "WebP": pillow_codec(images, "WEBP", webp_q)}
    timing: dict[str, dict] = {}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    device_names = {"cpu": "cpu", **({"cuda": torch.cuda.get_device_name(0)} if torch.cuda.is_available() else {})}

    from ssm_apps.codecs.pretrained import (
        DEFAULT_MODEL_ID,
        load_weights_file,
        shipped_models,
    )

    weights = args.weights or shipped_models().get(DEFAULT_MODEL_ID)
    bit_exact = True
    if trained is not None:
        names = {name for name, _ in images}
        for job in trained["jobs"]:
            if "error" in job:
                raise RuntimeError(f"--train-json: job {job['name']} failed: {job['error']}")
            label = "CMamba (ours)" if job["arch"] == "cmamba" else "mbt2018_mean"
            coded = [r for r in job["kodak"]["per_image"] if "bpp" in r and r["image"] in names]
            rows.setdefault(label, []).extend(coded)
            key = f"{label}/{trained['device']}"
            timing.setdefault(key, {"encode_s": [], "decode_s": []})
            for r in coded:
                timing[key]["encode_s"].append(r["encode_s"])
                timing[key]["decode_s"].append(r["decode_s"])
        timing = {k: {m: float(np.mean(v)) for m, v in t.items()} for k, t in timing.items()}
        bit_exact = all(r.get("bit_exact", True) for r in rows["CMamba (ours)"])
        devices = ["cpu"]  # the GPU figures come from the training run; time the CPU here
    if weights is not None and trained is not None:
        model = load_weights_file(weights, "cpu")
        qualities = args.qualities or list(model.qualities)
        _, t = ours_codec(model, images[: args.time_images], [qualities[0], qualities[-1]], "cpu", args.time_images)
        timing["CMamba (ours)/cpu"] = {k: float(np.mean(v)) for k, v in t.items()}
    elif weights is not None:
        model = load_weights_file(weights, args.device)
        qualities = args.qualities or list(model.qualities)
        rows["CMamba (ours)"], _ = ours_codec(model, images, qualities, args.device, 0)
        bit_exact = all(r["bit_exact"] for r in rows["CMamba (ours)"])
        for device in devices:
            model = load_weights_file(weights, device)
            _, t = ours_codec(
                model, images[: args.time_images], [qualities[0], qualities[-1]], device, args.time_images
            )
            timing[f"CMamba (ours)/{device_names[device]}"] = {k: float(np.mean(v)) for k, v in t.items()}
    if args.baseline_dir is not None:
        baselines = load_baselines(args.baseline_dir, "cpu" if trained is not None else args.device)
        if trained is None:
            rows["mbt2018_mean"], _ = baseline_codec(baselines, images, args.device, 0)
        for device in devices:
            models = {q: m.to(device) for q, m in list(baselines.items())[:1] + list(baselines.items())[-1:]}
            _, t = baseline_codec(models, images[: args.time_images], device, args.time_images)
            timing[f"mbt2018_mean/{device_names[device]}"] = {k: float(np.mean(v)) for k, v in t.items()}
    if args.baseline_rows is not None:
        earlier = json.loads(args.baseline_rows.read_text())
        names = {name for name, _ in images}
        kept = [r for r in earlier["per_image"].get("mbt2018_mean", []) if r["image"] in names]
        if {r["image"] for r in kept} != names:
            raise ValueError(f"--baseline-rows {args.baseline_rows}: no mbt2018_mean rows for every image of this run")
        rows["mbt2018_mean"] = kept
        timing.update({k: v for k, v in earlier["timing_per_image"].items() if k.startswith("mbt2018_mean/")})
    curves = {name: curve(r) for name, r in rows.items()}
    bd = {
        **bd_rates(curves, "CMamba (ours)", ["JPEG", "WebP", "mbt2018_mean"]),
        **bd_rates(curves, "WebP", ["JPEG"]),
        **bd_rates(curves, "mbt2018_mean", ["JPEG", "WebP"]),
    }
    rd_device = trained["device"] if trained is not None else device_names.get(args.device.split(":")[0], args.device)
    summary = {
        "devices": device_names,
        "rd_device": rd_device,
        "images": len(images),
        "crop": args.crop,
        "weights": str(weights) if weights else None,
        "curves": curves,
        "bd_rate_percent": bd,
        "timing_per_image": timing,
        "bit_exact": bit_exact,
        "per_image": rows,
    }
    (args.out / "codec_rd.json").write_text(json.dumps(summary, indent=1))
    plot(curves, args.out / "codec_rd.png")

    print(f"\n== Kodak rate-distortion ({len(images)} images{f', {args.crop} crops' if args.crop else ''}) ==")
    print(f"{'codec':<16} {'q':>3} {'bpp':>7} {'PSNR':>7} {'MS-SSIM':>8}")
    for name, c in curves.items():
        for i, q in enumerate(c["quality"]):
            ms = f"{c['ms_ssim'][i]:>8.5f}" if "ms_ssim" in c else f"{'-':>8}"
            print(f"{name:<16} {q:>3} {c['bpp'][i]:>7.4f} {c['psnr'][i]:>7.3f} {ms}")
    print("BD-rate (%, negative = fewer bits):")
    for k, v in bd.items():
        print(f"  {k:<40} {v:>8.2f}" if isinstance(v, float) else f"  {k:<40} {v}")
    for k, v in timing.items():
        print(f"  time {k:<35} encode {v['encode_s']:.3f} s  decode {v['decode_s']:.3f} s")
    print(f"bit-exact decode: {bit_exact}; results: {args.out / 'codec_rd.json'}, {args.out / 'codec_rd.png'}")
    return 0 if bit_exact else 1


if __name__ == "__main__":
    sys.exit(main())

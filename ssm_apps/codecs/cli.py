"""``ssm-apps codec``: compress, decompress and evaluate images with the CMamba codec.

    ssm-apps codec compress IN OUT.ssmc [--quality Q | --checkpoint CKPT [--quality Q]]
    ssm-apps codec decompress IN.ssmc OUT.png [--checkpoint CKPT]
    ssm-apps codec eval --data DIR [--quality Q ...] [--checkpoint CKPT] [--out DIR]

Without ``--checkpoint`` the shipped weights are used (compress: the default model; decompress:
the model named in the file's header). Errors are one line on stderr with a non-zero exit, and no
output file is written then.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

EXIT_ERROR = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssm-apps codec", description="Learned image compression with CMamba.")
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--checkpoint", type=Path, help="own weights: an exported .pt or an ImageCompressionTask checkpoint"
    )
    common.add_argument("--device", default="cpu", help="torch device (default cpu)")
    comp = sub.add_parser("compress", parents=[common], help="image -> .ssmc")
    comp.add_argument("input", type=Path)
    comp.add_argument("output", type=Path)
    comp.add_argument("--quality", type=int, help="1 (lowest rate) .. the model's highest (default: highest)")
    dec = sub.add_parser("decompress", parents=[common], help=".ssmc -> image (PNG, or any format by suffix)")
    dec.add_argument("input", type=Path)
    dec.add_argument("output", type=Path)
    ev = sub.add_parser("eval", parents=[common], help="rate-distortion of a folder of images (real files)")
    ev.add_argument("--data", type=Path, required=True, help="folder of images (searched recursively)")
    ev.add_argument("--quality", type=int, nargs="+", help="qualities (default: all of the model's)")
    ev.add_argument("--out", type=Path, default=Path("runs/codec_eval"), help="folder for results.csv / results.json")
    ev.add_argument("--limit", type=int, help="only the first N images")
    return parser


def _load_model(checkpoint: Path | None, device: str, model_id: str | None = None):
    from .pretrained import DEFAULT_MODEL_ID, load_pretrained, load_weights_file

    if checkpoint is not None:
        return load_weights_file(checkpoint, device)
    return load_pretrained(model_id or DEFAULT_MODEL_ID, device)


def _write_atomic(path: Path, write) -> None:
    """Write through a temporary file in the same folder, renamed into place only on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _compress(args) -> int:
    from .codec import encode, read_image

    image, colour = read_image(args.input)
    if colour == "gray":
        print(f"{args.input}: grayscale, coded as RGB (decoded back to grayscale)")
    elif colour == "rgba":
        print(f"{args.input}: RGBA, the alpha channel is dropped (RGB coded)")
    model = _load_model(args.checkpoint, args.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the RGBA notice is printed above
        result = encode(model, image, args.quality, colour_mode=colour)
    _write_atomic(args.output, lambda p: p.write_bytes(result.data))
    h = result.header
    size = f"{h.width}x{h.height}, quality {h.quality}, model {h.model_id}"
    print(f"{args.output}: {len(result.data)} bytes, {result.bpp:.4f} bpp ({size})")
    return 0


def _decompress(args) -> int:
    from .codec import decompress, read_header, write_image

    data = args.input.read_bytes()
    header = read_header(data)
    model = _load_model(args.checkpoint, args.device, header.model_id)
    image = decompress(data, model)
    _write_atomic(args.output, lambda p: write_image(p, image, header.colour_mode))
    h = header
    print(f"{args.output}: {h.width}x{h.height} {h.colour_mode} (quality {h.quality}, model {h.model_id})")
    return 0


def _evaluate(args) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from .codec import decompress, encode, read_image
    from .data import image_files
    from .metrics import MS_SSIM_MIN_SIDE, ms_ssim, psnr

    files = image_files([args.data])[: args.limit]
    model = _load_model(args.checkpoint, args.device)
    qualities = args.quality or list(model.qualities)
    rows = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        tqdm(total=len(files) * len(qualities), desc="codec eval", unit="img") as bar,
    ):
        for path in files:
            image, colour = read_image(path)
            target = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
            for q in qualities:
                start = time.perf_counter()
                result = encode(model, image, q, colour_mode=colour)
                encode_s = time.perf_counter() - start
                file = Path(tmp) / f"{path.stem}_q{q}.ssmc"
                file.write_bytes(result.data)
                start = time.perf_counter()
                decoded = decompress(file.read_bytes(), model)
                decode_s = time.perf_counter() - start
                recon = torch.from_numpy(decoded).permute(2, 0, 1)[None].float() / 255
                height, width = image.shape[:2]
                rows.append(
                    {
                        "image": path.name,
                        "quality": q,
                        "width": width,
                        "height": height,
                        "bytes": file.stat().st_size,
                        "bpp": 8 * file.stat().st_size / (height * width),
                        "psnr": float(psnr(recon, target)),
                        "ms_ssim": float(ms_ssim(recon, target)) if min(height, width) >= MS_SSIM_MIN_SIDE else None,
                        "bit_exact": bool(np.array_equal(decoded, result.reconstruction)),
                        "encode_s": encode_s,
                        "decode_s": decode_s,
                    }
                )
                bar.update()
    averages = []
    for q in qualities:
        sel = [r for r in rows if r["quality"] == q]
        means = {}
        for k in ("bpp", "psnr", "ms_ssim", "encode_s", "decode_s"):
            values = [r[k] for r in sel if r[k] is not None]
            means[k] = float(np.mean(values)) if values else None
        averages.append({"quality": q, "images": len(sel), **means, "bit_exact": all(r["bit_exact"] for r in sel)})
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = {
        "data": str(args.data),
        "model": getattr(model, "codec_id", "custom"),
        "device": args.device,
        "per_image": rows,
        "averages": averages,
    }
    (args.out / "results.json").write_text(json.dumps(summary, indent=2))
    print(f"{'quality':>7} {'bpp':>8} {'PSNR':>8} {'MS-SSIM':>8} {'enc s':>7} {'dec s':>7} exact")
    for a in averages:
        msssim = f"{a['ms_ssim']:>8.5f}" if a["ms_ssim"] is not None else f"{'-':>8}"
        print(
            f"{a['quality']:>7} {a['bpp']:>8.4f} {a['psnr']:>8.3f} {msssim} "
            f"{a['encode_s']:>7.2f} {a['decode_s']:>7.2f} {a['bit_exact']}"
        )
    print(f"results: {args.out / 'results.csv'}, {args.out / 'results.json'}")
    return 0 if all(a["bit_exact"] for a in averages) else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")  # compressai's import
    from .container import BitstreamError

    commands = {"compress": _compress, "decompress": _decompress, "eval": _evaluate}
    try:
        return commands[args.command](args)
    except (BitstreamError, ValueError, FileNotFoundError, IsADirectoryError) as err:
        print(f"ssm-apps codec {args.command}: error: {err}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())

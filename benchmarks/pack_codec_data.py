"""Pack the codec training and evaluation images losslessly (WebP lossless, about 73 % of the PNG
bytes) into one folder small enough to travel to a GPU machine (64 MiB limit there).

    python benchmarks/pack_codec_data.py            # -> runs/codec_data/{train,extra,kodak}/*.webp

The pixels are unchanged (checked image by image); train_codec_gpu.py reads this folder by default
when it exists.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "images"
sys.path.insert(0, str(REPO))

from ssm_apps.codecs.data import image_files  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", type=Path, default=SHARED)
    p.add_argument("--out", type=Path, default=REPO / "runs" / "codec_data")
    p.add_argument("--folders", nargs="+", default=["train", "extra", "kodak"])
    args = p.parse_args(argv)
    total_in = total_out = 0
    for folder in args.folders:
        target = args.out / folder
        target.mkdir(parents=True, exist_ok=True)
        for path in image_files([args.source / folder]):
            image = Image.open(path).convert("RGB")
            out = target / f"{path.stem}.webp"
            image.save(out, "WEBP", lossless=True, quality=80, method=4)
            if not np.array_equal(np.asarray(Image.open(out).convert("RGB")), np.asarray(image)):
                raise RuntimeError(f"{out}: lossless WebP changed the pixels of {path}")
            total_in, total_out = total_in + path.stat().st_size, total_out + out.stat().st_size
        print(f"{folder}: {len(list(target.glob('*.webp')))} images")
    print(f"{total_in / 2**20:.1f} MiB -> {total_out / 2**20:.1f} MiB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

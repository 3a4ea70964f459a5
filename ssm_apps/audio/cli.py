"""``ssm-apps audio ...`` commands.

    ssm-apps audio stats --data DIR [--target-length 128] [--workers 0]

``stats`` prints the mean and standard deviation of the (un-normalised) log-mel features of every
audio file under DIR, computed as the SSAST / SSAMBA recipes do (over the zero-padded / cropped
``target_length`` frames), to pass as ``mean`` / ``std`` to ``AudioDataModule``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .data import AUDIO_EXTENSIONS


def feature_stats(data: Path, target_length: int = 128, workers: int = 0) -> dict[str, float | int]:
    """Mean / std (float64 accumulation) of the raw fbank features of every audio file under ``data``."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from .data import _FeatureReader

    paths = sorted(str(p.relative_to(data)) for p in data.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    if not paths:
        raise ValueError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {str(data)!r}")
    reader = _FeatureReader(data, paths, target_length, None, None)
    total = total_sq = 0.0
    count = 0
    for feat, error, _ in tqdm(DataLoader(reader, batch_size=None, num_workers=workers), total=len(paths),
                               desc="fbank statistics", unit="file"):
        if error is not None:
            raise ValueError(error)
        f = feat.double()
        total += float(f.sum())
        total_sq += float((f * f).sum())
        count += f.numel()
    mean = total / count
    std = max(total_sq / count - mean * mean, 0.0) ** 0.5
    return {"mean": mean, "std": std, "files": len(paths), "target_length": target_length}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ssm-apps audio", description="Audio utilities (SSAMBA features).")
    sub = parser.add_subparsers(dest="command", required=True)
    stats = sub.add_parser("stats", help="mean / std of the log-mel features of a training folder")
    stats.add_argument("--data", required=True, type=Path, help="folder of audio files (searched recursively)")
    stats.add_argument("--target-length", type=int, default=128, help="frames per clip (default 128)")
    stats.add_argument("--workers", type=int, default=0, help="feature worker processes (default 0)")
    stats.add_argument("--json", type=Path, default=None, help="also write the result to this JSON file")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"ssm-apps audio stats: --data {str(args.data)!r} is not a folder", file=sys.stderr)
        return 2
    if args.target_length <= 0:
        print(f"ssm-apps audio stats: --target-length must be positive; got {args.target_length}", file=sys.stderr)
        return 2
    try:
        result = feature_stats(args.data, args.target_length, args.workers)
    except ValueError as err:
        print(f"ssm-apps audio stats: {err}", file=sys.stderr)
        return 1
    print(f"mean {result['mean']:.7f}  std {result['std']:.7f}  ({result['files']} files, "
          f"{result['target_length']} frames each)")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

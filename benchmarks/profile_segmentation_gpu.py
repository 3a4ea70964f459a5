"""Where a SegMAN-T inference forward spends its GPU time, against convnext_tiny + UperNet (issue 10).

Batch 32 at 512x512, bf16 autocast, eval: wall ms per forward (3 warm-up + 5 timed), the CUDA kernels of
one forward by self time, and device time per module class (profiler ranges around LASSMixer, the NA
call inside it, CrossScanSSM, ConvFFN, RoPE2d, the SegMAN decoder, UperNet); then the SegMAN-S training
step module profile of ``bench_segmentation_gpu.module_profile`` (NA and scan calls replayed alone).

    python benchmarks/profile_segmentation_gpu.py --out benchmarks/results/segmentation_profile_<gpu>.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ssm_apps.vision.segman as segman_module  # noqa: E402
from benchmarks import bench_segmentation_gpu as bench  # noqa: E402

RANGED = ("LASSMixer", "CrossScanSSM", "ConvFFN", "RoPE2d", "SegMANDecoder", "CrossScanBlock", "UperNetHead")


def ranged_modules(model: torch.nn.Module) -> list:
    """Profiler ranges "mod::<class>" around the RANGED modules and the top-level children; the hook handles."""
    handles = []
    for name, m in model.named_modules():
        cls = type(m).__name__
        if cls not in RANGED and not (name and "." not in name):
            continue

        def pre(mod, args, _cls=cls):
            mod._range = record_function(f"mod::{_cls}")
            mod._range.__enter__()

        def post(mod, args, out):
            mod._range.__exit__(None, None, None)

        handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    return handles


def profile_inference(name: str, batch: int) -> dict:
    model = bench.build(name, False).cuda().eval()
    x = torch.randn(batch, 3, 512, 512, device="cuda")
    handles = ranged_modules(model)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(3):
            model(x)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(5):
            model(x)
        torch.cuda.synchronize()
        ms = (time.perf_counter() - start) / 5 * 1e3
        with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
            model(x)
            torch.cuda.synchronize()
    for h in handles:
        h.remove()
    events = prof.key_averages()
    kernels = sorted((e for e in events if e.self_device_time_total > 0 and not e.key.startswith("mod::")),
                     key=lambda e: -e.self_device_time_total)
    total = sum(e.self_device_time_total for e in kernels)
    return {"batch": batch, "fwd_ms": ms, "img_s": batch / ms * 1e3,
            "kernels": [[e.key[:100], e.count, round(e.self_device_time_total / 1e3, 3),
                         round(e.self_device_time_total / total, 4)] for e in kernels[:40]],
            "modules": [[e.key, e.count, round(e.device_time_total / 1e3, 3)] for e in events
                        if e.key.startswith("mod::")]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/segmentation_profile.json"))
    p.add_argument("--na-backend", default="torch", help="NA backend of the SegMAN rows")
    args = p.parse_args()
    torch.backends.cudnn.benchmark = True
    result: dict = {"device": torch.cuda.get_device_name(), "na_backend": args.na_backend}
    real_na = segman_module.neighborhood_attention_2d

    def ranged_na(*a, **kw):
        with record_function("mod::NA"):
            return real_na(*a, **{**kw, "backend": args.na_backend})

    segman_module.neighborhood_attention_2d = ranged_na
    try:
        for name in ("segman_t", "convnext_t_upernet"):
            result[name] = profile_inference(name, 32)
            print(name, json.dumps(result[name])[:2000], flush=True)
            torch.cuda.empty_cache()
    finally:
        segman_module.neighborhood_attention_2d = real_na
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    result["segman_s_module_profile"] = bench.module_profile("cuda", False, args.na_backend)
    print(result["segman_s_module_profile"])
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

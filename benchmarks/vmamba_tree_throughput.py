"""VMamba-T throughput of whichever ``ssm_apps`` is first on PYTHONPATH (one tree of a bisection).

One fixed method for every tree, so that trees of different dates compare: batch 128, 224^2,
``cudnn.benchmark``, torch's default TF32 settings, eval fp32 and bf16-autocast inference (no grad,
two alternating inputs, 5 warm-up + 20 timed calls), bf16 training with AdamW; ``--profile`` adds the
CUDA kernel table of one bf16 inference forward, ``--tln`` puts every LayerNorm2d on the Triton
kernel (trees that have ``set_norm_backend``). Prints one ``RESULT {json}`` line.

    PYTHONPATH=/path/to/tree python benchmarks/vmamba_tree_throughput.py --profile
"""
from __future__ import annotations

import argparse
import json
import time

import timm
import torch


def timed(fn, iters: int = 20, warmup: int = 5) -> float:
    """Seconds per call of fn(i), back to back, after ``warmup`` calls."""
    for i in range(warmup):
        fn(i)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(iters):
        fn(i)
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters


def kernel_table(fn, top: int = 14) -> tuple[float, list]:
    """Total CUDA kernel ms of one fn() call and its ``top`` kernels [name, calls, ms]."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    events = sorted((e for e in prof.key_averages() if e.device_time_total > 0), key=lambda e: -e.device_time_total)
    total = sum(e.device_time_total for e in events) / 1e3
    return total, [[e.key[:90], e.count, round(e.device_time_total / 1e3, 3)] for e in events[:top]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", action="store_true")
    p.add_argument("--tln", action="store_true")
    args = p.parse_args()
    import ssm_apps.vision  # noqa: F401  (registers the models)

    torch.backends.cudnn.benchmark = True
    model = timm.create_model("vmamba_tiny_s1l8", num_classes=1000).cuda()
    if args.tln:
        from ssm_apps.layers import set_norm_backend

        set_norm_backend(model, "triton")
    xs = [torch.randn(128, 3, 224, 224, device="cuda") for _ in range(2)]
    out: dict = {}
    model.eval()
    with torch.no_grad():
        out["infer_fp32_img_s"] = 128 / timed(lambda i: model(xs[i % 2]))
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out["infer_bf16_img_s"] = 128 / timed(lambda i: model(xs[i % 2]))
            if args.profile:
                out["bf16_infer_profile_total_ms"], out["bf16_infer_profile"] = kernel_table(lambda: model(xs[0]))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    target = torch.randint(0, 1000, (128,), device="cuda")

    def step(i: int) -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(xs[i % 2]), target)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    out["train_bf16_img_s"] = 128 / timed(step)
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()

"""HyMamba speed and memory against the MONAI networks a user would pick instead (issue 12, item 8).

Forward (no grad) and forward+backward time and peak memory at 96^3, batch 2, bf16 autocast, 14 classes:
HyMamba (official preset) with the official raster scan and with the six-route tri6 scan, MONAI SwinUNETR
(feature_size 48) and SegResNet (init_filters 32). HyMamba's channel LayerNorms run on the Triton kernel of
``ssm_apps.kernels.norm`` on CUDA (its default; NCDHW maps read in place, output in the input's layout); a model
name ending in "+torchln" puts them back on the permuted ``F.layer_norm`` for comparison. Before timing, HyMamba-tri6's output with the Triton scan is
checked against the same network on the PyTorch reference scan. Target: HyMamba's training step <= SwinUNETR's
(each network in its faster memory format when ``--memory-formats`` lists both).

    python benchmarks/bench_medical_gpu.py                               # H200: about 1 minute
    python benchmarks/bench_medical_gpu.py --memory-formats channels_first channels_last --profile
    python benchmarks/bench_medical_gpu.py --models hymamba_raster,hymamba_raster+torchln,swin_unetr --profile-model hymamba_raster
    python benchmarks/bench_medical_gpu.py --quick --device cpu --out runs/bench_medical_smoke.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import mean_seconds  # noqa: E402
from ssm_apps.layers import set_norm_backend  # noqa: E402
from ssm_apps.medical.hymamba import create_hymamba  # noqa: E402

TORCH_NORM = "+torchln"


def build(name: str, size: int, quick: bool, classes: int) -> torch.nn.Module:
    from monai.networks.nets import SegResNet, SwinUNETR

    if name.endswith(TORCH_NORM):
        model = build(name[: -len(TORCH_NORM)], size, quick, classes)
        if not set_norm_backend(model, "torch"):
            raise ValueError(f"{name}: the network has no LayerNorm2d to put on the PyTorch path")
        return model
    tiny = dict(channels=(4, 8, 8, 16, 24), depths=(1, 1, 1, 1, 1), exp_r=(2, 2, 2, 2, 2), depth=1) if quick else {}
    if name == "hymamba_raster":
        return create_hymamba("hymamba_official", img_size=size, out_channels=classes, scan="raster", **tiny)
    if name == "hymamba_tri6":
        return create_hymamba("hymamba_official", img_size=size, out_channels=classes, scan="tri6", **tiny)
    if name == "swin_unetr":
        return SwinUNETR(in_channels=1, out_channels=classes, feature_size=12 if quick else 48, spatial_dims=3)
    if name == "segresnet":
        return SegResNet(spatial_dims=3, in_channels=1, out_channels=classes, init_filters=8 if quick else 32)
    raise ValueError(name)


MEMORY_FORMATS = {"channels_first": torch.contiguous_format, "channels_last": torch.channels_last_3d}


def bench(model: torch.nn.Module, x: torch.Tensor, device: torch.device, warmup: int, iters: int,
          memory_format: str = "channels_first") -> dict:
    """fwd / fwd+bwd ms and peak GiB; ``memory_format`` "channels_last" puts the weights and the input in
    channels_last_3d (NDHWC) strides."""
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    fmt = MEMORY_FORMATS[memory_format]
    model.to(device, memory_format=fmt).train()
    x = x.contiguous(memory_format=fmt)

    def fwd():
        with torch.no_grad(), amp:
            model(x)

    def step():
        with amp:
            out = model(x)
        out.float().mean().backward()

    row = {"parameters": sum(p.numel() for p in model.parameters())}
    for key, fn in (("fwd_ms", fwd), ("fwd_bwd_ms", step)):
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        row[key] = round(mean_seconds(fn, device, warmup, iters) * 1e3, 2)
        if device.type == "cuda":
            row[key.replace("_ms", "_peak_gib")] = round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2)
    model.zero_grad(set_to_none=True)
    model.cpu()
    return row


def kernel_profile(model: torch.nn.Module, x: torch.Tensor, device: torch.device, top: int = 12) -> list[dict]:
    """CUDA time of one bf16 training step by kernel (torch.profiler), the ``top`` largest with their share."""
    from torch.profiler import ProfilerActivity, profile

    model.to(device).train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        model(x).float().mean().backward()  # warm-up (cuDNN autotuning)
    torch.cuda.synchronize(device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            model(x).float().mean().backward()
        torch.cuda.synchronize(device)
    events = [e for e in prof.key_averages() if e.device_time_total > 0]
    total = sum(e.device_time_total for e in events)
    events.sort(key=lambda e: e.device_time_total, reverse=True)
    model.zero_grad(set_to_none=True)
    model.cpu()
    return [{"kernel": e.key[:120], "calls": e.count, "ms": round(e.device_time_total / 1e3, 3),
             "share": round(e.device_time_total / total, 4)} for e in events[:top]]


@contextmanager
def strict_fp32():
    """TF32 off in cuDNN convolutions and matmuls (the checks compare float32 outputs), restored after."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def check_tri6(device: torch.device, quick: bool) -> float:
    """Max |difference| of HyMamba-tri6 logits: default backend (Triton on CUDA) vs the PyTorch reference scan."""
    torch.manual_seed(0)
    size = 32
    model = create_hymamba("hymamba_tiny", img_size=size, out_channels=3, scan="tri6").to(device).eval()
    ref = create_hymamba("hymamba_tiny", img_size=size, out_channels=3, scan="tri6", scan_backend="ref")
    ref = ref.to(device).eval()
    ref.load_state_dict(model.state_dict())
    x = torch.randn(1, 1, size, size, size, device=device)
    with torch.no_grad(), strict_fp32():
        return float((model(x) - ref(x)).abs().max())


def check_triton_norm(device: torch.device) -> float:
    """Max |difference| of HyMamba logits (float32): channel LayerNorms on the Triton kernel vs PyTorch."""
    torch.manual_seed(0)
    size = 32
    model = create_hymamba("hymamba_tiny", img_size=size, out_channels=3).to(device).eval()
    x = torch.randn(1, 1, size, size, size, device=device)
    with torch.no_grad(), strict_fp32():
        set_norm_backend(model, "triton")
        out = model(x)
        set_norm_backend(model, "torch")
        return float((out - model(x)).abs().max())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="benchmarks/results/bench_medical_gpu.json")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="tiny networks at 32^3, batch 1 (CPU smoke test)")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--models", default="hymamba_raster,hymamba_tri6,swin_unetr,segresnet")
    p.add_argument("--memory-formats", nargs="+", choices=sorted(MEMORY_FORMATS), default=["channels_first"],
                   help="measure every model in each (rows named model@format after the first)")
    p.add_argument("--profile", action="store_true", help="CUDA kernel table of one HyMamba (raster) training step")
    p.add_argument("--profile-model", default=None, help="the model --profile profiles (implies --profile); "
                   "default hymamba_raster")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    size, batch = (32, 1) if args.quick else (args.size, args.batch)
    warmup, iters = (1, 1) if args.quick else (3, args.iters)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    result = {"device": name, "torch": torch.__version__, "size": size, "batch": batch, "classes": 14,
              "dtype": "bf16 autocast" if device.type == "cuda" else "float32", "rows": {}}
    err = check_tri6(device, args.quick)
    result["tri6_default_vs_ref_max_abs"] = err
    ok = err < 1e-3
    print(f"HyMamba tri6: default scan backend vs reference, max |diff| {err:.2e} ({'ok' if ok else 'MISMATCH'})")
    if device.type == "cuda":
        err = check_triton_norm(device)
        result["triton_norm_vs_torch_max_abs"] = err
        ok = ok and err < 1e-3
        print(f"HyMamba: Triton channel LayerNorm vs PyTorch, max |diff| {err:.2e} ({'ok' if err < 1e-3 else 'MISMATCH'})")
    for index, memory_format in enumerate(args.memory_formats):
        for model_name in args.models.split(","):
            torch.manual_seed(0)
            # SwinUNETR needs >= 2 voxels per axis at 1/32 (its instance norms), so the smoke test runs it at 64^3
            s = 64 if args.quick and model_name == "swin_unetr" else size
            x = torch.randn(batch, 1, s, s, s, device=device)
            row_name = model_name if index == 0 else f"{model_name}@{memory_format}"
            try:
                row = bench(build(model_name, s, args.quick, 14), x, device, warmup, iters, memory_format)
                result["rows"][row_name] = {"memory_format": memory_format, **row}
            except Exception as e:  # noqa: BLE001 - report the failing row, keep the others
                result["rows"][row_name] = {"memory_format": memory_format, "error": f"{type(e).__name__}: {e}"}
                ok = False
    if (args.profile or args.profile_model) and device.type == "cuda":
        profiled = args.profile_model or "hymamba_raster"
        x = torch.randn(batch, 1, size, size, size, device=device)
        result["hymamba_kernel_profile"] = kernel_profile(build(profiled, size, args.quick, 14), x, device)
        result["hymamba_kernel_profile_model"] = profiled
        print(f"\n{profiled} training step, CUDA time by kernel:")
        for r in result["hymamba_kernel_profile"]:
            print(f"  {r['share']:6.1%} {r['ms']:8.2f} ms {r['calls']:5d}x  {r['kernel']}")
    print(f"\n== medical 3-D networks, {size}^3, batch {batch}, {result['dtype']}, {name} ==")
    print(f"{'model':16s} {'params (M)':>10s} {'fwd ms':>8s} {'fwd+bwd ms':>11s} {'peak fwd GiB':>12s} "
          f"{'peak step GiB':>13s}")
    for model_name, r in result["rows"].items():
        if "error" in r:
            print(f"{model_name:16s} ERROR {r['error']}")
            continue
        print(f"{model_name:16s} {r['parameters'] / 1e6:10.2f} {r['fwd_ms']:8.1f} {r['fwd_bwd_ms']:11.1f} "
              f"{r.get('fwd_peak_gib', float('nan')):12.2f} {r.get('fwd_bwd_peak_gib', float('nan')):13.2f}")
    rows = result["rows"]
    def best_step(prefix: str) -> float | None:  # fastest training step of a network over the memory formats
        times = [r["fwd_bwd_ms"] for k, r in rows.items()
                 if k.split("@")[0] == prefix and "fwd_bwd_ms" in r]
        return min(times) if times else None

    hymamba_ms, swin_ms = best_step("hymamba_raster"), best_step("swin_unetr")
    if hymamba_ms is not None and swin_ms is not None:
        result["hymamba_step_le_swin"] = hymamba_ms <= swin_ms
        print(f"HyMamba (raster) training step <= SwinUNETR's (each in its faster memory format): "
              f"{hymamba_ms:.1f} vs {swin_ms:.1f} ms, {result['hymamba_step_le_swin']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"JSON: {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
